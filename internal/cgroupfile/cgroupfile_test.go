package cgroupfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A fixture directory stands for a cgroup: each write replaces the file's
// content, and nothing missing is created.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "blkio.throttle.read_bps_device")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"7:3 6000000", "7:3 0"} {
		if err := Write(dir, filepath.Base(file), v); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(file); string(b) != v {
			t.Errorf("after writing %q the file holds %q", v, b)
		}
	}
	gone := filepath.Join(dir, "removed-cgroup")
	err := Write(gone, "cpu.cfs_quota_us", "1000")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), gone) {
		t.Errorf("a missing cgroup: %v, want an error naming it that matches fs.ErrNotExist", err)
	}
	if _, err := os.Stat(gone); err == nil {
		t.Error("Write created the missing cgroup directory")
	}
	if err := Write(dir, "memory.limit_in_bytes", "1"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing control file: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.limit_in_bytes")); err == nil {
		t.Error("Write created a control file")
	}
}

// Removed: the ENODEV of a cgroup removed while its file was open reads
// as not existing; other errors, and nil, pass as they are.
func TestRemoved(t *testing.T) {
	enodev := &fs.PathError{Op: "write", Path: "/sys/fs/cgroup/x/io.max", Err: unix.ENODEV}
	if err := Removed(enodev); !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, unix.ENODEV) {
		t.Errorf("Removed(ENODEV) = %v, want it to match fs.ErrNotExist and still ENODEV", err)
	}
	ebusy := &fs.PathError{Op: "write", Path: "/sys/fs/cgroup/x/memory.max", Err: unix.EBUSY}
	if err := Removed(ebusy); err != error(ebusy) {
		t.Errorf("Removed(EBUSY) = %v, want it unchanged", err)
	}
	if err := Removed(nil); err != nil {
		t.Errorf("Removed(nil) = %v", err)
	}
}
