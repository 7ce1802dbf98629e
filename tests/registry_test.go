package tests

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
	"github.com/cci-shim/cci-shim/tests/registry"
)

// startRegistryEnv starts a test registry holding the busybox test image as
// each of repos (e.g. "mirror/busybox:test") and a CRI env whose containerd
// pulls every registry host namespace in hosts from it.
func startRegistryEnv(t *testing.T, repos []string, hosts ...string) (*registry.Registry, *e2eenv.Env) {
	t.Helper()
	reg := registry.Start(t)
	hostsDir := t.TempDir()
	if err := reg.WriteHostsConfig(hostsDir, append([]string{reg.Host}, hosts...)...); err != nil {
		t.Fatal(err)
	}
	env := e2eenv.Start(t, e2eenv.Options{CRI: true, ExtraContainerdConfig: registry.CRIConfig(hostsDir)})
	for _, repo := range repos {
		d, err := reg.PushOCIArchive(env.ImageArchive, e2eenv.ImageName, repo)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pushed %s as %s/%s (%s)", e2eenv.ImageName, reg.Host, repo, d)
	}
	return reg, env
}

// TestCRIPullFromLocalRegistry: CRI PullImage by name, served by the test
// registry on 127.0.0.1: under its own address and under another registry
// name mapped to it by hosts.toml (how R26's replaced names are served in
// tests).
func TestCRIPullFromLocalRegistry(t *testing.T) {
	reg, env := startRegistryEnv(t, []string{"mirror/busybox:test", "org/busybox:test"}, "registry.example")
	_, is := env.CRI()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tc := range []struct{ image, repo string }{
		{reg.Host + "/mirror/busybox:test", "mirror/busybox"},
		{"registry.example/org/busybox:test", "org/busybox"},
	} {
		if st, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: tc.image}}); err != nil || st.Image != nil {
			t.Fatalf("ImageStatus %s before the pull: %v, %v; want no image", tc.image, st, err)
		}
		r, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tc.image}})
		if err != nil {
			t.Fatalf("PullImage %s: %v\n%s", tc.image, err, env.ContainerdLog())
		}
		st, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: tc.image}})
		if err != nil || st.Image == nil {
			t.Fatalf("ImageStatus %s after pull: %v %v", tc.image, st, err)
		}
		if !reg.Served(tc.repo, "test") {
			t.Errorf("%s was not pulled from the test registry: requests %v", tc.image, reg.Requests())
		}
		t.Logf("pulled %s: %s, %d bytes, tags %v", tc.image, r.ImageRef, st.Image.Size, st.Image.RepoTags)
	}
}
