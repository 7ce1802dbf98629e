package logfwd

import (
	"github.com/cci-shim/cci-shim/internal/testutil"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestConfinement (R20): planted symlinks, FIFOs, device nodes, long names
// and a log directory swapped for a symlink yield nothing and are counted;
// with openat2 and with the O_NOFOLLOW walking fallback.
func TestConfinement(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		name := "openat2"
		if fallback {
			name = "nofollow-walk"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			secret := filepath.Join(t.TempDir(), "secret.log")
			os.WriteFile(secret, []byte("HOST SECRET\n"), 0o600)
			e := newEnv(t, "*.log", func(c *Config) {
				c.noOpenat2 = fallback
				c.PollInterval = 200 * time.Millisecond
			})
			os.Symlink(secret, filepath.Join(e.dir, "link.log"))
			if err := unix.Mkfifo(filepath.Join(e.dir, "fifo.log"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(e.dir, strings.Repeat("n", 191)+".log"), []byte("too long name\n"), 0o644)
			os.WriteFile(filepath.Join(e.dir, strings.Repeat("n", 186)+".log"), []byte("name of 190\n"), 0o644)
			e.start()
			e.write("ok.log", "fine")
			e.waitLines(2, 5*time.Second)

			// Swap the log directory for a symlink to a host directory.
			moved := e.dir + ".moved"
			if err := os.Rename(e.dir, moved); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Dir(secret), e.dir); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(secret, []byte("HOST SECRET\nMORE SECRET\n"), 0o600)
			time.Sleep(700 * time.Millisecond) // a few polls
			got := e.sink.lines()
			if err := sameMultiset(got, []string{"fine", "name of 190"}); err != nil {
				t.Fatal(err)
			}
			s := e.c.Stats()
			if s.Skipped[SkipSymlink] < 2 || s.Skipped[SkipNotRegular] != 1 || s.Skipped[SkipNameTooLong] != 1 {
				t.Errorf("skipped %v; want symlink>=2 (file, dir), not_regular 1, name_too_long 1", s.Skipped)
			}
		})
	}
}

// TestDeviceNodeNotOpened: a device node planted by the container is never
// opened for reading (only an O_PATH descriptor is taken).
func TestDeviceNodeNotOpened(t *testing.T) {
	testutil.RequireRoot(t, "mknod")
	e := newEnv(t, "*.log", func(c *Config) { c.PollInterval = 100 * time.Millisecond })
	// /dev/zero's numbers: reading it would never end.
	if err := unix.Mknod(filepath.Join(e.dir, "zero.log"), syscall.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.write("ok.log", "fine")
	got := e.waitLines(1, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	if err := sameMultiset(got, []string{"fine"}); err != nil {
		t.Fatal(err)
	}
	if s := e.c.Stats(); s.Skipped[SkipNotRegular] != 1 {
		t.Errorf("skipped %v", s.Skipped)
	}
}

// TestConfinerRefusesEscapes checks the opener directly.
func TestConfinerRefusesEscapes(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(root, "a", "b", "f"), []byte("x"), 0o644)
	os.Symlink("/etc", filepath.Join(root, "a", "l"))
	rfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rfd)
	cases := []struct {
		rel    string
		wantOK bool
	}{
		{"a/b/f", true},
		{"../etc/passwd", false},
		{"/etc/passwd", false},
		{"a/l/passwd", false},
		{"a/l", false},
	}
	for _, fallback := range []bool{false, true} {
		for _, tc := range cases {
			c := confiner{noOpenat2: fallback}
			fd, err := c.openBeneath(rfd, tc.rel, unix.O_RDONLY|unix.O_NOFOLLOW)
			if err == nil {
				unix.Close(fd)
			}
			if (err == nil) != tc.wantOK {
				t.Errorf("fallback=%v %q: err=%v, want ok=%v", fallback, tc.rel, err, tc.wantOK)
			}
		}
	}
}
