package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Ext4Image makes a sparse 32 MiB ext4 image at path, a rootfs or volume as
// the blockfile snapshotter and the shim's volume pool hand them over.
func Ext4Image(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(32 << 20)
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return path
}
