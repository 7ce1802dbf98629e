package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// kubeletTree lays out <root>/kubelet/pods/<uid>/{volumes/kubernetes.io~empty-dir/data,etc-hosts}
// as kubelet does (root-owned, 0750 pod dir).
func kubeletTree(t *testing.T) (root string, podRel string) {
	t.Helper()
	root = filepath.Join(t.TempDir(), "kubelet")
	podRel = "pods/" + tUID
	vol := filepath.Join(root, podRel, "volumes/kubernetes.io~empty-dir/data")
	if err := os.MkdirAll(vol, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{root, filepath.Join(root, "pods"), filepath.Join(root, podRel)} {
		if err := os.Chmod(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(vol, "secret.txt"), []byte("pod data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, podRel, "etc-hosts"), []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, podRel
}

func TestPinSources(t *testing.T) {
	testutil.RequireRoot(t, "bind-mounts pinned sources")
	root, podRel := kubeletTree(t)
	podDir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() { _ = Cleanup(podDir) })
	pins := []Pin{
		{Root: root, Anchor: podRel, Rel: podRel + "/volumes/kubernetes.io~empty-dir/data", Target: filepath.Join(podDir, "pins/c1/0/kubernetes.io~empty-dir/volume")},
		{Root: root, Anchor: podRel, Rel: podRel + "/etc-hosts", Target: filepath.Join(podDir, "pins/c1/1")},
	}
	mounted, err := PinSources(pins)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounted) != 2 {
		t.Fatalf("mounted %v", mounted)
	}
	b, err := os.ReadFile(filepath.Join(pins[0].Target, "secret.txt"))
	if err != nil || string(b) != "pod data\n" {
		t.Fatalf("pinned dir: %q %v", b, err)
	}
	if b, _ := os.ReadFile(pins[1].Target); string(b) != "127.0.0.1 localhost\n" {
		t.Fatalf("pinned file: %q", b)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(pins[0].Target, &st); err != nil || st.Flags&unix.ST_NODEV == 0 {
		t.Errorf("pinned mount flags %#x (%v), want nodev", st.Flags, err)
	}

	// The tenant swaps the checked directory for a symlink to a host
	// directory after the check: the pinned mount still shows the original.
	vol := filepath.Join(root, pins[0].Rel)
	if err := os.Rename(vol, vol+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", vol); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(pins[0].Target, "secret.txt")); err != nil || string(b) != "pod data\n" {
		t.Fatalf("after the swap the pin shows %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(pins[0].Target, "passwd")); err == nil {
		t.Fatal("the pin follows the swapped-in symlink")
	}
	// ...and pinning it now is refused.
	again := pins[0]
	again.Target = filepath.Join(podDir, "pins/c2/0")
	if _, err := PinSources([]Pin{again}); err == nil || !strings.Contains(err.Error(), "without symlinks") {
		t.Fatalf("pinning a symlink: %v", err)
	}

	if err := UnpinSources(mounted); err != nil {
		t.Fatal(err)
	}
	if ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(podDir)); len(ms) != 0 {
		t.Fatalf("mounts left: %+v", ms)
	}
	if _, err := os.Stat(filepath.Join(podDir, "pins")); !os.IsNotExist(err) {
		t.Errorf("pins dir left: %v", err)
	}
}

func TestPinRefusals(t *testing.T) {
	testutil.RequireRoot(t, "bind-mounts pinned sources")
	root, podRel := kubeletTree(t)
	podDir := filepath.Join(t.TempDir(), "pod")
	t.Cleanup(func() { _ = Cleanup(podDir) })
	good := Pin{Root: root, Anchor: podRel, Rel: podRel + "/etc-hosts", Target: filepath.Join(podDir, "pins/c/0")}
	link := filepath.Join(t.TempDir(), "link-to-kubelet")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, podRel, "volumes/evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, podRel, "volumes/dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(root, podRel, "volumes/dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		mut     func(*Pin)
		wantErr string
	}{
		{"inferred root through a symlink", func(p *Pin) { p.Root = link }, "without symlinks"},
		{"final symlink", func(p *Pin) { p.Rel = podRel + "/volumes/evil" }, "without symlinks"},
		{"dotdot out of the root", func(p *Pin) { p.Rel = podRel + "/../../../../etc/passwd" }, "without symlinks"},
		{"a device node", func(p *Pin) { p.Rel = podRel + "/volumes/dev/null" }, "neither a directory nor a regular file"},
		{"pod dir writable by others", func(p *Pin) {
			if err := os.Chmod(filepath.Join(root, podRel), 0o777); err != nil {
				t.Fatal(err)
			}
		}, "want root and not group- or other-writable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			tc.mut(&p)
			mounted, err := PinSources([]Pin{good, p})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || mounted != nil {
				t.Fatalf("err = %v mounted %v, want %q", err, mounted, tc.wantErr)
			}
			if ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(podDir)); len(ms) != 0 {
				t.Fatalf("a failed PinSources left mounts: %+v", ms)
			}
		})
	}
	if err := os.Chmod(filepath.Join(root, podRel), 0o750); err != nil {
		t.Fatal(err)
	}
	// A configured (trusted) root may be reached through a symlink.
	trusted := good
	trusted.Root, trusted.RootTrusted = link, true
	mounted, err := PinSources([]Pin{trusted})
	if err != nil {
		t.Fatal(err)
	}
	if err := UnpinSources(mounted); err != nil {
		t.Fatal(err)
	}
}

func TestHostFSStatfsPinned(t *testing.T) {
	testutil.RequireRoot(t, "mounts a tmpfs")
	root, podRel := kubeletTree(t)
	dshm := filepath.Join(root, podRel, "volumes/kubernetes.io~empty-dir/dshm")
	if err := os.Mkdir(dshm, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dshm, "tmpfs", 0, "size=128m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dshm, unix.MNT_DETACH) })
	size, tmpfs, err := hostFS(Pin{Root: root, Anchor: podRel, Rel: podRel + "/volumes/kubernetes.io~empty-dir/dshm"})
	if err != nil || !tmpfs || size != 128<<20 {
		t.Fatalf("size %d tmpfs %v err %v", size, tmpfs, err)
	}
	if err := os.Symlink("/dev/shm", filepath.Join(root, podRel, "volumes/kubernetes.io~empty-dir/sneaky")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hostFS(Pin{Root: root, Anchor: podRel, Rel: podRel + "/volumes/kubernetes.io~empty-dir/sneaky"}); err == nil {
		t.Fatal("statfs followed a symlink")
	}
}

func TestCheckRoots(t *testing.T) {
	root, _ := kubeletTree(t)
	got := CheckRoots(root, "/nonexistent-containerd", "/nonexistent-state")
	if len(got) != 2 || !strings.Contains(got[0], "policy.containerd_root") || !strings.Contains(got[1], "policy.containerd_state") {
		t.Fatalf("problems %v", got)
	}
}
