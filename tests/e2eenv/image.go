//go:build linux

package e2eenv

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PauseScript is the pause image's entrypoint: it blocks until SIGTERM or SIGINT and exits 0.
// `sleep & wait` lets the trap run at once (busybox sh runs traps only between commands).
const PauseScript = `trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done`

// imageEpoch is every file's mtime, so the archive (and the image digests) are reproducible.
var imageEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const imagePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// buildImageArchive writes an OCI layout tar holding ImageName and PauseImageName, both made of
// one layer with Debian's busybox-static and its applet links.
func buildImageArchive(dst string) error {
	layer, err := busyboxLayer()
	if err != nil {
		return err
	}
	layerDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayer,
		Digest:    digest.FromBytes(layer),
		Size:      int64(len(layer)),
	}
	blobs := map[digest.Digest][]byte{layerDesc.Digest: layer}
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, img := range []struct {
		name string
		cfg  ocispec.ImageConfig
	}{
		{ImageName, ocispec.ImageConfig{Env: []string{imagePath}, Cmd: []string{"/bin/sh"}, WorkingDir: "/"}},
		{PauseImageName, ocispec.ImageConfig{Env: []string{imagePath}, Entrypoint: []string{"/bin/sh", "-c", PauseScript}, WorkingDir: "/", StopSignal: "SIGTERM"}},
	} {
		desc, err := addImage(blobs, layerDesc, img.cfg)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.name, err)
		}
		desc.Annotations = map[string]string{
			"io.containerd.image.name": img.name,
			ocispec.AnnotationRefName:  img.name[strings.LastIndex(img.name, ":")+1:],
		}
		index.Manifests = append(index.Manifests, desc)
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("encoding index: %w", err)
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("encoding oci-layout: %w", err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: imageEpoch, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, ModTime: imageEpoch, Typeflag: tar.TypeDir}); err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
	}
	if err := add(ocispec.ImageLayoutFile, layoutJSON); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	if err := add(ocispec.ImageIndexFile, indexJSON); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d.String())
	}
	sort.Strings(digests)
	for _, d := range digests {
		if err := add("blobs/sha256/"+digest.Digest(d).Encoded(), blobs[digest.Digest(d)]); err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	return nil
}

// addImage adds the config and manifest blobs of a one-layer image and returns the manifest's
// descriptor.
func addImage(blobs map[digest.Digest][]byte, layer ocispec.Descriptor, cfg ocispec.ImageConfig) (ocispec.Descriptor, error) {
	platform := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	created := imageEpoch
	config := ocispec.Image{
		Created:  &created,
		Platform: platform,
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}},
		History:  []ocispec.History{{Created: &created, CreatedBy: "cci-shim tests/e2eenv: Debian busybox-static"}},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encoding config: %w", err)
	}
	configDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(configJSON), Size: int64(len(configJSON))}
	blobs[configDesc.Digest] = configJSON
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layer},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encoding manifest: %w", err)
	}
	desc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifestJSON),
		Size:      int64(len(manifestJSON)),
		Platform:  &platform,
	}
	blobs[desc.Digest] = manifestJSON
	return desc, nil
}

// busyboxLayer returns an uncompressed layer tar: /bin/busybox, a symlink for every applet at
// the place `busybox --list-full` names, and a minimal root filesystem skeleton.
func busyboxLayer() ([]byte, error) {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("reading busybox: %w", err)
	}
	out, err := exec.Command(BusyboxPath, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list-full: %w", err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	dir := func(name string, mode int64) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: mode, ModTime: imageEpoch, Typeflag: tar.TypeDir})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), ModTime: imageEpoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	write := func() error {
		for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "dev", "proc", "sys", "run", "var", "mnt"} {
			if err := dir(d, 0o755); err != nil {
				return err
			}
		}
		if err := dir("tmp", 0o1777); err != nil {
			return err
		}
		if err := dir("root", 0o700); err != nil {
			return err
		}
		if err := file("bin/busybox", 0o755, bin); err != nil {
			return err
		}
		if err := file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")); err != nil {
			return err
		}
		if err := file("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")); err != nil {
			return err
		}
		links := strings.Fields(string(out))
		sort.Strings(links)
		for _, l := range links {
			l = strings.TrimPrefix(l, "/")
			if path.Dir(l) == "." || l == "bin/busybox" {
				continue // e.g. linuxrc
			}
			if err := tw.WriteHeader(&tar.Header{Name: l, Linkname: "/bin/busybox", Mode: 0o777, ModTime: imageEpoch, Typeflag: tar.TypeSymlink}); err != nil {
				return err
			}
		}
		return tw.Close()
	}
	if err := write(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	return buf.Bytes(), nil
}
