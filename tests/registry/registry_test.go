package registry

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ociArchive writes a one-image OCI layout tar with the image annotated as
// containerd's import would name it.
func ociArchive(t *testing.T, imageName string) (string, v1.Hash) {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"io.containerd.image.name": imageName})); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Name: rel + "/", Mode: 0o755, Typeflag: tar.TypeDir})
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil || tw.Close() != nil {
		t.Fatalf("writing archive: %v", err)
	}
	archive := filepath.Join(t.TempDir(), "images.tar")
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return archive, d
}

func TestPushAndPull(t *testing.T) {
	r := Start(t)
	if !strings.HasPrefix(r.Host, "127.0.0.1:") {
		t.Fatalf("registry host %q is not on 127.0.0.1", r.Host)
	}
	archive, want := ociArchive(t, "localhost/cci/x:test")
	got, err := r.PushOCIArchive(archive, "localhost/cci/x:test", "mirror/x:test")
	if err != nil {
		t.Fatal(err)
	}
	if got != want.String() {
		t.Errorf("pushed digest %s; want %s", got, want)
	}
	ref, err := name.ParseReference(r.Host+"/mirror/x:test", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pulling back: %v", err)
	}
	if d, _ := img.Digest(); d != want {
		t.Errorf("pulled digest %s; want %s", d, want)
	}
	if !r.Served("mirror/x", "test") {
		t.Errorf("Served(mirror/x, test) = false; requests %v", r.Requests())
	}
	if r.Served("mirror/y", "test") {
		t.Error("Served(mirror/y, test) = true for an image nobody asked for")
	}
	if _, err := r.PushOCIArchive(archive, "localhost/cci/missing:test", "m/x:1"); err == nil || !strings.Contains(err.Error(), "no such image") {
		t.Errorf("pushing a missing image = %v", err)
	}
}

func TestUntarRefusesEscapes(t *testing.T) {
	for _, hdr := range []*tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg},
		{Name: "/abs", Typeflag: tar.TypeReg},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		tw.Close()
		archive := filepath.Join(t.TempDir(), "a.tar")
		if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := untar(archive, dir); err == nil {
			t.Errorf("untar accepted %q (%c)", hdr.Name, hdr.Typeflag)
		}
	}
}

func TestWriteHostsConfig(t *testing.T) {
	r := Start(t)
	dir := t.TempDir()
	if err := r.WriteHostsConfig(dir, r.Host, "registry.example"); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{r.Host, "registry.example"} {
		b, err := os.ReadFile(filepath.Join(dir, ns, "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `server = "http://`+r.Host+`"`) {
			t.Errorf("%s/hosts.toml = %s", ns, b)
		}
	}
	for _, bad := range []string{"", "a/b", "..", `a\b`} {
		if err := r.WriteHostsConfig(dir, bad); err == nil {
			t.Errorf("WriteHostsConfig(%q) accepted", bad)
		}
	}
	if got := CRIConfig("/x/hosts"); !strings.Contains(got, `[plugins."io.containerd.cri.v1.images".registry]`) || !strings.Contains(got, `config_path = "/x/hosts"`) {
		t.Errorf("CRIConfig = %s", got)
	}
}
