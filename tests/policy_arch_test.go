package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// armImage is an image whose entrypoint, /usr/local/bin/hello, is an
// aarch64 ELF executable. Its config says linux/<host arch>, as a
// mislabelled image does: an image labelled arm64 would not be pulled or
// unpacked on this host at all, so the shim would never see it.
const armImage = "localhost/cci/arm-hello:test"

// TestPolicyArchitecture: a container whose entrypoint is built for another
// architecture fails to start with an error naming both architectures, not
// a bare "exec format error" (R6), through ctr and CRI.
func TestPolicyArchitecture(t *testing.T) { forEachBackend(t, testPolicyArchitecture) }

func testPolicyArchitecture(t *testing.T, b testBackend) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the test image is aarch64 and the expected message names amd64; this host is %s (CI runs on amd64)", runtime.GOARCH)
	}
	env := startPolicyEnv(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	archive := filepath.Join(env.Dir, "arm-hello.tar")
	if err := writeELFImage(archive, armImage, elfHeader(elf.EM_AARCH64)); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{env.Namespace, e2eenv.CRINamespace} {
		if _, errOut, err := env.CtrIn(ns, "images", "import", archive); err != nil {
			t.Fatalf("ctr -n %s images import: %v: %s", ns, err, errOut)
		}
	}
	const want = "image architecture arm64 does not match host architecture amd64 (entrypoint /usr/local/bin/hello is an ELF aarch64 binary)"

	t.Run("ctr", func(t *testing.T) {
		_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, armImage, "arm-hello")
		code := exitCode(t, err)
		if code == 0 {
			t.Fatal("ctr run of an aarch64 entrypoint succeeded")
		}
		if !strings.Contains(errOut, want) {
			t.Errorf("ctr run (exit status %d): error does not name both architectures:\n%s", code, errOut)
		}
		t.Logf("tenant sees (ctr run, exit status %d): %s", code, ctrError(errOut))
		env.Ctr("task", "rm", "-f", "arm-hello")
		env.Ctr("container", "rm", "arm-hello")
		assertClean(t, env)
	})

	t.Run("CRI", func(t *testing.T) {
		_, img := env.CRI()
		if !waitFor(10*time.Second, func() bool {
			st, err := img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: armImage}})
			return err == nil && st.Image != nil
		}) {
			t.Fatalf("CRI does not see %s", armImage)
		}
		p := mustRunPod(ctx, t, env, podConfig(env, "arm", nil))
		id, err := p.start(ctx, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "hello"},
			Image:    &runtimeapi.ImageSpec{Image: armImage},
			LogPath:  "hello.log",
		})
		if err == nil {
			// Say what the tenant sees instead: the container's status and log.
			var st *runtimeapi.ContainerStatus
			waitFor(5*time.Second, func() bool {
				r, err := p.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
				st = r.GetStatus()
				return err == nil && st.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
			})
			log, _ := os.ReadFile(filepath.Join(p.cfg.LogDirectory, "hello.log"))
			t.Errorf("StartContainer succeeded, want %q; the container is %v, exit code %d, reason %q, message %q, log %q",
				want, st.GetState(), st.GetExitCode(), st.GetReason(), st.GetMessage(), log)
		} else {
			wantRefused(t, "StartContainer", err, `container "hello": `+want)
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})
}

// elfHeader is a 64-byte ELF64 little-endian executable header for machine,
// with no program headers: enough for the kernel (and the shim) to read
// the architecture.
func elfHeader(machine elf.Machine) []byte {
	h := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(machine),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     0x400000,
		Phoff:     64,
		Ehsize:    64,
		Phentsize: 56,
		Shentsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	return b.Bytes()
}

// writeELFImage writes an OCI layout tar holding one image, name, of one
// layer with /usr/local/bin/hello, the ELF file exe, as the entrypoint
// (found through PATH).
func writeELFImage(dst, name string, exe []byte) error {
	epoch := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tarOf := func(files func(tw *tar.Writer) error) ([]byte, error) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := files(tw); err != nil {
			return nil, err
		}
		err := tw.Close()
		return buf.Bytes(), err
	}
	file := func(tw *tar.Writer, name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	layer, err := tarOf(func(tw *tar.Writer) error {
		for _, d := range []string{"usr/", "usr/local/", "usr/local/bin/"} {
			if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
				return err
			}
		}
		return file(tw, "usr/local/bin/hello", 0o755, exe)
	})
	if err != nil {
		return err
	}
	blobs := map[digest.Digest][]byte{}
	add := func(mediaType string, data []byte) ocispec.Descriptor {
		d := digest.FromBytes(data)
		blobs[d] = data
		return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
	}
	layerDesc := add(ocispec.MediaTypeImageLayer, layer)
	platform := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	config, err := json.Marshal(ocispec.Image{
		Created:  &epoch,
		Platform: platform,
		Config: ocispec.ImageConfig{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Entrypoint: []string{"hello"},
			WorkingDir: "/",
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    add(ocispec.MediaTypeImageConfig, config),
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	mdesc := add(ocispec.MediaTypeImageManifest, manifest)
	mdesc.Platform = &platform
	mdesc.Annotations = map[string]string{
		"io.containerd.image.name": name,
		ocispec.AnnotationRefName:  name[strings.LastIndex(name, ":")+1:],
	}
	index, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{mdesc}})
	if err != nil {
		return err
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	archive, err := tarOf(func(tw *tar.Writer) error {
		if err := file(tw, ocispec.ImageLayoutFile, 0o644, layout); err != nil {
			return err
		}
		if err := file(tw, ocispec.ImageIndexFile, 0o644, index); err != nil {
			return err
		}
		for d, data := range blobs {
			if err := file(tw, "blobs/sha256/"+d.Encoded(), 0o644, data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return os.WriteFile(dst, archive, 0o644)
}
