package iothrottle

import (
	"os"
	"testing"
)

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
