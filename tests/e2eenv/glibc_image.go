//go:build linux

package e2eenv

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImportGlibcImage builds an image called name for dynamically linked host programs: the
// busybox test layer plus one layer holding files (image path → host path, content and mode
// copied, symlinks followed) and the dynamic loader and shared libraries that ldd lists for
// each of them, at the paths ldd names. It imports the image into the env's namespace and,
// with CRI, into k8s.io, and waits until CRI sees it.
func (e *Env) ImportGlibcImage(name string, files map[string]string) error {
	all := map[string]string{}
	for dst, src := range files {
		all[dst] = src
		libs, err := sharedLibraries(src)
		if err != nil {
			return err
		}
		for k, v := range libs {
			all[k] = v
		}
	}
	return e.ImportFilesImage(name, all)
}

// sharedLibraries runs ldd on prog and returns what it lists with a path (the loader and
// each resolved library), keyed by that path; the vDSO has none.
func sharedLibraries(prog string) (map[string]string, error) {
	out, err := exec.Command("ldd", prog).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", prog, err, out)
	}
	libs := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 3 && fields[1] == "=>" && strings.HasPrefix(fields[2], "/"):
			libs[fields[2]] = fields[2] // libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
		case len(fields) >= 1 && strings.HasPrefix(fields[0], "/"):
			libs[fields[0]] = fields[0] // /lib64/ld-linux-x86-64.so.2 (0x...)
		case len(fields) >= 3 && fields[1] == "=>":
			return nil, fmt.Errorf("ldd %s: %s", prog, strings.TrimSpace(line)) // "not found"
		}
	}
	return libs, nil
}

// filesLayer returns an uncompressed layer tar with files (image path → host path) and
// their parent directories.
func filesLayer(files map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	srcs := map[string]string{} // tar name → host path
	dsts := make([]string, 0, len(files))
	for dst, src := range files {
		name := strings.TrimPrefix(path.Clean("/"+dst), "/")
		srcs[name] = src
		dsts = append(dsts, name)
	}
	sort.Strings(dsts)
	dirs := map[string]bool{}
	for _, dst := range dsts {
		var parents []string
		for d := path.Dir(dst); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := tw.WriteHeader(&tar.Header{Name: parents[i] + "/", Mode: 0o755, ModTime: imageEpoch, Typeflag: tar.TypeDir}); err != nil {
				return nil, err
			}
		}
		src := srcs[dst]
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Name: dst, Mode: int64(fi.Mode().Perm()), Size: int64(len(data)), ModTime: imageEpoch, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeLayoutArchive writes an OCI layout tar holding one image, name, made of layers (bottom
// first) with /bin/sh as its command.
func writeLayoutArchive(dst, name string, layers [][]byte) error {
	blobs := map[digest.Digest][]byte{}
	var descs []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, l := range layers {
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(l), Size: int64(len(l))}
		blobs[d.Digest] = l
		descs = append(descs, d)
		diffIDs = append(diffIDs, d.Digest)
	}
	platform := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	created := imageEpoch
	config := ocispec.Image{
		Created:  &created,
		Platform: platform,
		Config:   ocispec.ImageConfig{Env: []string{imagePath}, Cmd: []string{"/bin/sh"}, WorkingDir: "/"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	put := func(v any) (digest.Digest, int64, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return "", 0, err
		}
		d := digest.FromBytes(b)
		blobs[d] = b
		return d, int64(len(b)), nil
	}
	cd, cs, err := put(config)
	if err != nil {
		return err
	}
	md, ms, err := put(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: cs},
		Layers:    descs,
	})
	if err != nil {
		return err
	}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: ms, Platform: &platform,
			Annotations: map[string]string{
				"io.containerd.image.name": name,
				ocispec.AnnotationRefName:  name[strings.LastIndex(name, ":")+1:],
			},
		}}}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: imageEpoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add(ocispec.ImageLayoutFile, layoutJSON); err != nil {
		return err
	}
	if err := add(ocispec.ImageIndexFile, indexJSON); err != nil {
		return err
	}
	keys := make([]string, 0, len(blobs))
	for d := range blobs {
		keys = append(keys, d.String())
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := digest.Digest(k)
		if err := add("blobs/sha256/"+d.Encoded(), blobs[d]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(dst, buf.Bytes(), 0o644)
}

// ImportFilesImage builds an image called name: the busybox test layer plus one layer holding
// files (image path → host path, content and mode copied, symlinks followed). It imports the
// image into the env's namespace and, with CRI, into k8s.io, and waits until CRI sees it.
func (e *Env) ImportFilesImage(name string, files map[string]string) error {
	layer, err := filesLayer(files)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	base, err := busyboxLayer()
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	archive := filepath.Join(e.Dir, "image-"+strings.NewReplacer("/", "_", ":", "_").Replace(name)+".tar")
	if err := writeLayoutArchive(archive, name, [][]byte{base, layer}); err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	nss := []string{e.Namespace}
	if e.cri {
		nss = append(nss, CRINamespace)
	}
	for _, ns := range nss {
		if _, stderr, err := e.CtrIn(ns, "images", "import", archive); err != nil {
			return fmt.Errorf("ctr -n %s images import %s: %w: %s", ns, name, err, stderr)
		}
	}
	if !e.cri {
		return nil
	}
	_, img, err := e.criClients()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	for {
		st, err := img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
		if err == nil && st.Image != nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("CRI does not see image %s after import: %w", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
