package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/internal/testutil"

	"github.com/cci-shim/cci-shim/shm"
	"github.com/moby/sys/mountinfo"
)

func mountsUnder(t *testing.T, dir string) int {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	return len(ms)
}

func TestPrepareAndCleanup(t *testing.T) {
	testutil.RequireRoot(t, "mounts tmpfs and loop ext4")
	podDir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() { _ = Cleanup(podDir) })
	plan := &Plan{
		PodDir: podDir,
		Shm:    ShmMount{Path: filepath.Join(podDir, "shm"), Size: 32 << 20},
		Dirs: []Dir{
			{Path: filepath.Join(podDir, "volumes/vol-m"), Size: 16 << 20, Memory: true},
			{Path: filepath.Join(podDir, "volumes/vol-d"), Image: filepath.Join(podDir, "images/vol-d.img"), Size: 64 << 20},
		},
	}
	undo, err := Prepare(plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := mountsUnder(t, podDir); n != 3 {
		t.Fatalf("%d mounts under pod dir, want 3", n)
	}
	if size, tmpfs, _ := shm.HostSize(plan.Shm.Path); !tmpfs || size != 32<<20 {
		t.Fatalf("shm: %d tmpfs=%v", size, tmpfs)
	}
	if size, tmpfs, _ := shm.HostSize(plan.Dirs[0].Path); !tmpfs || size != 16<<20 {
		t.Fatalf("memory volume: %d tmpfs=%v", size, tmpfs)
	}
	if size, tmpfs, _ := shm.HostSize(plan.Dirs[1].Path); tmpfs || size <= 0 || size > 64<<20 {
		t.Fatalf("disk volume: %d tmpfs=%v, want ext4 of at most 64 MiB", size, tmpfs)
	}
	// Idempotent: a second Prepare (next container of the pod) mounts nothing.
	undo2, err := Prepare(plan, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := undo2(); err != nil || mountsUnder(t, podDir) != 3 {
		t.Fatalf("undo of a no-op Prepare changed mounts: %v", err)
	}
	// Writing past the disk limit fails.
	big := make([]byte, 80<<20)
	if err := os.WriteFile(filepath.Join(plan.Dirs[1].Path, "f"), big, 0o600); err == nil {
		t.Fatal("wrote 80 MiB into a 64 MiB volume")
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if n := mountsUnder(t, podDir); n != 0 {
		t.Fatalf("%d mounts left after undo", n)
	}
	// Cleanup after a "restart": only the pod dir is known.
	if _, err := Prepare(plan, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(podDir, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Cleanup(podDir); err != nil {
		t.Fatal(err)
	}
	if n := mountsUnder(t, podDir); n != 0 {
		t.Fatalf("%d mounts left after Cleanup", n)
	}
	for _, sub := range []string{"shm", "volumes", "images"} {
		if _, err := os.Stat(filepath.Join(podDir, sub)); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", sub, err)
		}
	}
	if _, err := os.Stat(filepath.Join(podDir, "other")); err != nil {
		t.Errorf("Cleanup removed a file it did not create: %v", err)
	}
	if err := Cleanup(podDir); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
}

func TestPrepareUndoesOnError(t *testing.T) {
	testutil.RequireRoot(t, "mounts tmpfs and loop ext4")
	podDir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() { _ = Cleanup(podDir) })
	plan := &Plan{
		PodDir: podDir,
		Shm:    ShmMount{Path: filepath.Join(podDir, "shm"), Size: 32 << 20},
		Dirs: []Dir{
			{Path: filepath.Join(podDir, "volumes/vol-m"), Size: 16 << 20, Memory: true},
			{Path: filepath.Join(podDir, "volumes/vol-bad"), Size: -1, Memory: true},
		},
	}
	if _, err := Prepare(plan, nil); err == nil {
		t.Fatal("Prepare with a bad size succeeded")
	}
	if n := mountsUnder(t, podDir); n != 0 {
		t.Fatalf("%d mounts left after a failed Prepare", n)
	}
}

// TestPrepareRefusesVolumeBeyondFreeDisk: issue 9 item 12, a replaced
// volume's sizeLimit far above the node's free disk is refused, not
// created as a sparse promise the disk cannot keep.
func TestPrepareRefusesVolumeBeyondFreeDisk(t *testing.T) {
	testutil.RequireRoot(t, "mounts tmpfs")
	podDir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() { _ = Cleanup(podDir) })
	plan := &Plan{PodDir: podDir, Dirs: []Dir{
		{Path: filepath.Join(podDir, "volumes/vol-m"), Size: 16 << 20, Memory: true},
		{Path: filepath.Join(podDir, "volumes/vol-huge"), Image: filepath.Join(podDir, "images/vol-huge.img"), Size: 1 << 60},
	}}
	_, err := Prepare(plan, nil)
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.Field != "sizeLimit" || !strings.Contains(err.Error(), "free for pod volumes") {
		t.Fatalf("err = %v", err)
	}
	if n := mountsUnder(t, podDir); n != 0 {
		t.Fatalf("%d mounts left", n)
	}
	if _, err := os.Stat(plan.Dirs[1].Image); !os.IsNotExist(err) {
		t.Fatalf("image left: %v", err)
	}
}
