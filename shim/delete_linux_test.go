package shim

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/internal/cgroupfile"
	"github.com/cci-shim/cci-shim/internal/testutil"
)

// TestUnmountAll: an empty or missing dir is removed as it is; a dir that
// still holds a bind mount, or is a mount point itself, is unmounted first
// and never removed through the mount (the bind source keeps its file).
func TestUnmountAll(t *testing.T) {
	base := t.TempDir()
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unmountAll(empty); err != nil {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := os.Lstat(empty); !os.IsNotExist(err) {
		t.Errorf("empty dir still there: %v", err)
	}
	if err := unmountAll(filepath.Join(base, "gone")); err != nil {
		t.Errorf("missing dir: %v", err)
	}

	testutil.RequireRoot(t, "bind mounts")
	src := filepath.Join(base, "src")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(src, "host-file")
	if err := os.WriteFile(kept, []byte("host data"), 0o600); err != nil {
		t.Fatal(err)
	}
	holder := filepath.Join(base, "holder")
	target := filepath.Join(holder, "pin")
	if err := os.MkdirAll(target, 0o700); err != nil {
		t.Fatal(err)
	}
	bindMount(t, src, target)
	if err := unmountAll(holder); err != nil {
		t.Fatalf("dir holding a bind mount: %v", err)
	}
	if _, err := os.Lstat(holder); !os.IsNotExist(err) {
		t.Errorf("dir holding a bind mount still there: %v", err)
	}

	point := filepath.Join(base, "point")
	if err := os.Mkdir(point, 0o700); err != nil {
		t.Fatal(err)
	}
	bindMount(t, src, point)
	if err := unmountAll(point); err != nil {
		t.Fatalf("dir that is a mount point: %v", err)
	}
	if _, err := os.Lstat(point); !os.IsNotExist(err) {
		t.Errorf("mount point dir still there: %v", err)
	}
	if data, err := os.ReadFile(kept); err != nil || string(data) != "host data" {
		t.Fatalf("the bind source's file: %q, %v; want it untouched", data, err)
	}
}

// bindMount binds src at target until the test ends.
func bindMount(t *testing.T, src, target string) {
	t.Helper()
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
}

// TestCgroupGone: the errors a write into a removed cgroup gives are read
// as gone (nothing left to release); others are not.
func TestCgroupGone(t *testing.T) {
	missing := cgroupfile.Write(filepath.Join(t.TempDir(), "removed"), "cpu.cfs_quota_us", "1000")
	for _, c := range []struct {
		err  error
		gone bool
	}{
		{missing, true},
		{cgroupfile.Removed(&os.PathError{Op: "write", Path: "/sys/fs/cgroup/x/io.max", Err: unix.ENODEV}), true},
		{cgroupfile.Removed(&os.PathError{Op: "write", Path: "/sys/fs/cgroup/x/memory.max", Err: unix.EBUSY}), false},
		{nil, false},
	} {
		if got := cgroupGone(c.err); got != c.gone {
			t.Errorf("cgroupGone(%v) = %v, want %v", c.err, got, c.gone)
		}
	}
}
