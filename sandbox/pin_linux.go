package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Pinning (R24: what was checked is what is mounted). Every platform bind
// source of a spec is opened once, beneath its root, without following any
// symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS),
// checked (the pod's own directory is root-owned and not writable by
// group or others; the source is a directory or a regular file), and the
// opened object itself is cloned as a detached mount (open_tree), made
// nodev (mount_setattr, recursively: no device node in a volume is usable
// through it, on the host or by a VMM's file server) and attached at the pin's
// staging path (move_mount). The spec names the staging path, so a symlink
// or directory swapped in after the check changes nothing. Needs Linux 5.12.

const resolveStrict = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// PinSources mounts every pin at its target. It returns the targets it
// mounted, for the pod's owner to persist and UnpinSources to undo; on error
// it has undone its own work. Targets that already hold a mount (a retried
// Create) are an error. Requires root.
func PinSources(pins []Pin) (mounted []string, err error) {
	defer func() {
		if err != nil {
			if uerr := UnpinSources(mounted); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undoing pins: %w", uerr))
			}
			mounted = nil
		}
	}()
	for _, p := range pins {
		if err := pinOne(p); err != nil {
			return mounted, fmt.Errorf("pinning bind source %s: %w", filepath.Join(p.Root, p.Rel), err)
		}
		mounted = append(mounted, p.Target)
	}
	return mounted, nil
}

// UnpinSources detaches the given pin targets and removes them and the
// directories PinSources made for them, where empty. Targets that are not
// mounted or do not exist are skipped.
func UnpinSources(targets []string) error {
	var errs []error
	for i := len(targets) - 1; i >= 0; i-- {
		t := targets[i]
		if err := unix.Unmount(t, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", t, err))
			continue
		}
		if !strings.Contains(t, "/pins/") {
			continue
		}
		for p := t; ; p = filepath.Dir(p) {
			if err := os.Remove(p); err != nil || filepath.Base(p) == "pins" {
				break // not empty or gone, or the pins dir itself
			}
		}
	}
	return errors.Join(errs...)
}

func pinOne(p Pin) error {
	if !filepath.IsAbs(p.Target) || p.Rel == "" || filepath.IsAbs(p.Rel) {
		return fmt.Errorf("bad pin %+v", p)
	}
	root, err := openRoot(p.Root, p.RootTrusted)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	if p.Anchor != "" {
		if err := checkAnchor(root, p.Anchor); err != nil {
			return err
		}
	}
	src, err := unix.Openat2(root, p.Rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveStrict})
	if err != nil {
		return fmt.Errorf("opening %s beneath %s without symlinks: %w", p.Rel, p.Root, err)
	}
	defer unix.Close(src)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if !isDir && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s is neither a directory nor a regular file (mode %o)", p.Rel, st.Mode)
	}
	tree, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("cloning the opened source: %w", err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("making the source nodev: %w", err)
	}
	if err := makeTarget(p.Target, isDir); err != nil {
		return err
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, p.Target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		os.Remove(p.Target)
		return fmt.Errorf("mounting at %s: %w", p.Target, err)
	}
	return nil
}

// openRoot opens a root directory: a trusted (configured) one as the
// operator wrote it, symlinks included; an inferred one from "/" without
// following any symlink.
func openRoot(root string, trusted bool) (int, error) {
	if trusted {
		fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("opening %s: %w", root, err)
		}
		return fd, nil
	}
	rel := strings.TrimPrefix(filepath.Clean(root), "/")
	if rel == "" || !filepath.IsAbs(root) {
		return -1, fmt.Errorf("inferred root %q is not an absolute directory", root)
	}
	slash, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(slash)
	fd, err := unix.Openat2(slash, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveStrict})
	if err != nil {
		return -1, fmt.Errorf("opening %s without symlinks: %w", root, err)
	}
	return fd, nil
}

// checkAnchor requires the pod's own directory to be a root-owned directory
// that group and others cannot write: what kubelet and containerd create,
// and what a tenant writing into some volume cannot make.
func checkAnchor(root int, anchor string) error {
	fd, err := unix.Openat2(root, anchor, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolveStrict})
	if err != nil {
		return fmt.Errorf("opening the pod's directory %s without symlinks: %w", anchor, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return fmt.Errorf("the pod's directory %s is owned by uid %d with mode %o, want root and not group- or other-writable", anchor, st.Uid, st.Mode&0o7777)
	}
	return nil
}

// makeTarget creates an empty mount point (directory or file) under the
// shim's own pod directory.
func makeTarget(target string, dir bool) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return err
	}
	if dir {
		if err := os.Mkdir(target, 0o700); err != nil {
			return fmt.Errorf("creating mount point: %w", err)
		}
		return nil
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating mount point: %w", err)
	}
	return f.Close()
}

// hostFS is Config.HostFS: statfs of a pinned-open path.
func hostFS(p Pin) (int64, bool, error) {
	root, err := openRoot(p.Root, p.RootTrusted)
	if err != nil {
		return 0, false, err
	}
	defer unix.Close(root)
	if p.Anchor != "" {
		if err := checkAnchor(root, p.Anchor); err != nil {
			return 0, false, err
		}
	}
	fd, err := unix.Openat2(root, p.Rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveStrict})
	if err != nil {
		return 0, false, fmt.Errorf("opening %s without symlinks: %w", p.Rel, err)
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return 0, false, fmt.Errorf("statfs %s: %w", p.Rel, err)
	}
	return int64(st.Blocks) * st.Bsize, st.Type == unix.TMPFS_MAGIC, nil
}

// CheckRoots looks at the configured kubelet and containerd roots and says
// what does not look like one (for cci-agent check): no pods directory
// under the kubelet root, no CRI directory under containerd's root or state.
// Pods still work from inferred roots; RootMismatches compares with what
// running pods showed.
func CheckRoots(kubeletRoot, containerdRoot, containerdState string) []string {
	var problems []string
	for _, c := range []struct{ key, dir, sub string }{
		{"policy.kubelet_root", kubeletRoot, "pods"},
		{"policy.containerd_root", containerdRoot, criDir},
		{"policy.containerd_state", containerdState, criDir},
	} {
		fi, err := os.Stat(filepath.Join(c.dir, c.sub))
		if err != nil || !fi.IsDir() {
			problems = append(problems, fmt.Sprintf("%s = %q: no %s directory in it (%v)", c.key, c.dir, c.sub, err))
		}
	}
	return problems
}
