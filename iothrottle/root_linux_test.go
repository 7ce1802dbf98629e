package iothrottle

import (
	"os"
	"testing"
)

// requireRoot skips a test that needs root, or fails it in CI, where it
// must run.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root and CI=true: run the CI job as root")
	}
	t.Skip("needs root (loop devices, cgroups); CI runs it as root")
}

// sparseFile creates a sparse file of size bytes.
func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	p := t.TempDir() + "/rootfs.img"
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}
