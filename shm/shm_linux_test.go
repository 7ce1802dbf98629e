package shm

import (
	"github.com/cci-shim/cci-shim/internal/testutil"
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestMountResizeUnmount(t *testing.T) {
	testutil.RequireRoot(t, "mounts a tmpfs")
	p := filepath.Join(t.TempDir(), "shm")
	t.Cleanup(func() { _ = Unmount(p) })
	mounted, err := Mount(p, 8<<20)
	if err != nil || !mounted {
		t.Fatalf("Mount = %v, %v", mounted, err)
	}
	size, tmpfs, err := HostSize(p)
	if err != nil || !tmpfs || size != 8<<20 {
		t.Fatalf("HostSize = %d %v %v, want 8 MiB tmpfs", size, tmpfs, err)
	}
	if mounted, err := Mount(p, 8<<20); err != nil || mounted {
		t.Fatalf("second Mount = %v, %v; want idempotent", mounted, err)
	}
	if _, err := Mount(p, 16<<20); err != nil {
		t.Fatal(err)
	}
	if size, _, _ := HostSize(p); size != 16<<20 {
		t.Fatalf("after resize: %d", size)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0 {
		t.Fatalf("mode %v, %v; want 1777", st.Mode(), err)
	}
	if err := Unmount(p); err != nil {
		t.Fatal(err)
	}
	if ok, _ := mountinfo.Mounted(p); ok {
		t.Fatal("still mounted")
	}
	if err := Unmount(p); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
	if _, err := Mount(p, 1000); err == nil {
		t.Fatal("unaligned size accepted")
	}
}
