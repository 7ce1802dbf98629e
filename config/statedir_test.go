package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPrepareStateDir(t *testing.T) {
	dir := t.TempDir()
	c := Default()
	c.StateDir = filepath.Join(dir, "run", "cci-shim")
	if err := c.PrepareStateDir("/etc/cci-shim/config.toml"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(c.StateDir); err != nil || !fi.IsDir() {
		t.Fatalf("not created: %v", err)
	}
	if left, _ := os.ReadDir(c.StateDir); len(left) != 0 {
		t.Fatalf("probe left behind: %v", left)
	}
	// A file where the directory should be.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	c.StateDir = filepath.Join(file, "cci-shim")
	err := c.PrepareStateDir("/etc/x.toml")
	if err == nil || !strings.Contains(err.Error(), "state_dir "+c.StateDir+" (node config /etc/x.toml): cannot create it: ") {
		t.Fatalf("err = %v", err)
	}
	// A read-only mount (root only: a bind mount of our own).
	if os.Geteuid() != 0 {
		return
	}
	ro := filepath.Join(dir, "ro")
	os.MkdirAll(ro, 0o755)
	if err := unix.Mount(ro, ro, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	defer unix.Unmount(ro, unix.MNT_DETACH)
	if err := unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Skipf("read-only remount: %v", err)
	}
	c.StateDir = ro
	if err := c.PrepareStateDir("/c.toml"); err == nil || !strings.Contains(err.Error(), "cannot create files in it: ") || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("err = %v", err)
	}
}
