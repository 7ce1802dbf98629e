// Package registry runs an OCI distribution registry inside a test process,
// on 127.0.0.1, for end-to-end tests that pull images by name: CRI
// PullImage, kubelet, R26 image replacement. The registry is
// go-containerregistry's in-memory one (pkg/registry); images are pushed
// into it from OCI layout archives such as the one tests/e2eenv builds, and
// WriteHostsConfig points containerd's registry host configuration
// (hosts.toml under the CRI plugin's config_path) at it, so that any
// registry name an image uses (127.0.0.1:PORT, registry.example, ...) is
// served from here over plain HTTP.
//
// It is for tests only: no TLS, no authentication, everything in memory,
// gone when the test ends. It never listens on anything but 127.0.0.1.
package registry

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TB is the part of testing.TB the registry uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Registry is one running registry.
type Registry struct {
	// Host is the registry's address as image names spell it: 127.0.0.1:PORT.
	Host string
	// URL is its base URL: http://127.0.0.1:PORT.
	URL string

	srv *httptest.Server
	tmp string

	mu       sync.Mutex // guards requests
	requests []string   // "METHOD /path" of every request, in order
}

// Start starts a registry on 127.0.0.1 and stops it when the test ends.
func Start(t TB) *Registry {
	t.Helper()
	r := &Registry{tmp: t.TempDir()}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	r.srv.Start() // httptest listens on 127.0.0.1:0
	t.Cleanup(r.srv.Close)
	r.URL = r.srv.URL
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// Requests returns "METHOD /path" of every request served so far.
func (r *Registry) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...)
}

// Served reports whether a request for the manifest repo:reference was
// served (a pull or resolve of that image).
func (r *Registry) Served(repo, reference string) bool {
	want := "/v2/" + repo + "/manifests/" + reference
	for _, q := range r.Requests() {
		if _, p, _ := strings.Cut(q, " "); p == want {
			return true
		}
	}
	return false
}

// PushOCIArchive pushes the image named imageName in an OCI layout tar
// (matched by the io.containerd.image.name or org.opencontainers.image.ref.name
// annotation of its index entry) to this registry as dst, a repository path
// and tag such as "mirror/busybox:test". It returns the manifest digest.
func (r *Registry) PushOCIArchive(archive, imageName, dst string) (string, error) {
	dir, err := os.MkdirTemp(r.tmp, "layout-")
	if err != nil {
		return "", fmt.Errorf("pushing %s: %w", imageName, err)
	}
	defer os.RemoveAll(dir)
	if err := untar(archive, dir); err != nil {
		return "", fmt.Errorf("pushing %s: %w", imageName, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return "", fmt.Errorf("pushing %s: reading OCI layout: %w", imageName, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return "", fmt.Errorf("pushing %s: reading OCI index: %w", imageName, err)
	}
	for _, d := range im.Manifests {
		if d.Annotations["io.containerd.image.name"] != imageName && d.Annotations["org.opencontainers.image.ref.name"] != imageName {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return "", fmt.Errorf("pushing %s: %w", imageName, err)
		}
		ref, err := name.ParseReference(r.Host+"/"+dst, name.Insecure, name.StrictValidation)
		if err != nil {
			return "", fmt.Errorf("pushing %s: destination %q: %w", imageName, dst, err)
		}
		if err := remote.Write(ref, img); err != nil {
			return "", fmt.Errorf("pushing %s to %s: %w", imageName, ref, err)
		}
		return d.Digest.String(), nil
	}
	return "", fmt.Errorf("pushing %s: no such image in %s", imageName, archive)
}

// untar extracts the regular files and directories of an OCI layout tar;
// anything else, and any name leaving dir, is an error.
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", archive, err)
		}
		clean := path.Clean(hdr.Name)
		if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("reading %s: entry %q leaves the layout", archive, hdr.Name)
		}
		dst := filepath.Join(dir, filepath.FromSlash(clean))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extracting %s: %w", hdr.Name, err)
			}
		default:
			return fmt.Errorf("reading %s: entry %q of type %q is not a file or directory", archive, hdr.Name, hdr.Typeflag)
		}
	}
}

// WriteHostsConfig writes containerd's registry host configuration under
// dir (the CRI plugin's registry config_path, see CRIConfig): for each
// registry host namespace — how image names spell the registry, e.g.
// r.Host or "registry.example" — a <namespace>/hosts.toml whose server is
// this registry over HTTP. An image "<namespace>/org/img:tag" is then pulled
// from this registry's repository "org/img".
func (r *Registry) WriteHostsConfig(dir string, namespaces ...string) error {
	for _, ns := range namespaces {
		if ns == "" || strings.ContainsAny(ns, "/\\") || ns == "." || ns == ".." {
			return fmt.Errorf("hosts config: registry host namespace %q is not a host[:port]", ns)
		}
		d := filepath.Join(dir, ns)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("hosts config: %w", err)
		}
		toml := fmt.Sprintf("# Written by tests/registry: %s is served by the test registry.\nserver = %q\n", ns, r.URL)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return fmt.Errorf("hosts config: %w", err)
		}
	}
	return nil
}

// CRIConfig is the containerd configuration (version 3) that makes CRI read
// registry host configuration from hostsDir; e2eenv.Options.ExtraContainerdConfig
// takes it as is.
func CRIConfig(hostsDir string) string {
	return fmt.Sprintf("[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = %q\n", hostsDir)
}
