package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/cci-shim/cci-shim/shm"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Prepare does the host work of a plan, idempotently: it mounts the pod's
// /dev/shm tmpfs (resizing it when the size changed) and every replacement
// volume (Memory: tmpfs size=N; disk: a sparse ext4 image of N bytes,
// loop-mounted; both mode 0777 like kubelet's emptyDir). Mounts that already
// exist are kept. On error it undoes what this call did. undo reverses this
// call only; Cleanup removes everything of a pod, also after a restart.
// Requires root and mkfs.ext4 (e2fsprogs) for disk volumes, which it runs
// through run: a process that reaps its children (containerd's shim does, on
// SIGCHLD) must hand in a runner that goes through its reaper; nil runs the
// command plainly.
func Prepare(plan *Plan, run CommandRunner) (undo func() error, err error) {
	if run == nil {
		run = func(cmd *exec.Cmd) ([]byte, error) { return cmd.CombinedOutput() }
	}
	var undos []func() error
	undoAll := func() error {
		var errs []error
		for i := len(undos) - 1; i >= 0; i-- {
			errs = append(errs, undos[i]())
		}
		undos = nil
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			if uerr := undoAll(); uerr != nil {
				err = errors.Join(err, fmt.Errorf("undoing: %w", uerr))
			}
		}
	}()
	if plan == nil || !filepath.IsAbs(plan.PodDir) {
		return nil, fmt.Errorf("preparing pod: bad plan")
	}
	if err := os.MkdirAll(plan.PodDir, 0o711); err != nil {
		return nil, fmt.Errorf("preparing pod: %w", err)
	}
	if plan.Shm.Size > 0 {
		mounted, err := shm.Mount(plan.Shm.Path, plan.Shm.Size)
		if err != nil {
			return nil, fmt.Errorf("preparing pod: %w", err)
		}
		if mounted {
			p := plan.Shm.Path
			undos = append(undos, func() error { return unmountRemove(p) })
		}
	}
	for _, d := range plan.Dirs {
		done, err := prepareDir(d, run)
		if err != nil {
			return nil, fmt.Errorf("preparing volume %s: %w", d.Path, err)
		}
		if done != nil {
			undos = append(undos, done)
		}
	}
	return undoAll, nil
}

// prepareDir mounts one replacement volume unless it is mounted already.
func prepareDir(d Dir, run CommandRunner) (undo func() error, err error) {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return nil, err
	}
	if ok, err := mountinfo.Mounted(d.Path); err != nil || ok {
		return nil, err
	}
	if d.Memory {
		data := fmt.Sprintf("mode=0777,size=%d", d.Size)
		if err := unix.Mount("tmpfs", d.Path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
			return nil, fmt.Errorf("mounting tmpfs: %w", err)
		}
		return func() error { return unmountRemove(d.Path) }, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.Image), 0o700); err != nil {
		return nil, err
	}
	cleanImage := func() error { return errors.Join(os.Remove(d.Image), os.Remove(d.Path)) }
	if _, err := os.Stat(d.Image); err != nil { // else: left by an interrupted Prepare, reuse it
		if err := checkFreeDisk(d); err != nil {
			return nil, errors.Join(err, os.Remove(d.Path))
		}
		f, err := os.OpenFile(d.Image, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("creating image: %w", err)
		}
		err = f.Truncate(d.Size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("sizing image: %w", err), cleanImage())
		}
		out, err := run(exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0", d.Image))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("mkfs.ext4: %w: %s", err, out), cleanImage())
		}
	}
	m := mount.Mount{Type: "ext4", Source: d.Image, Options: []string{"loop", "nosuid", "nodev"}}
	if err := m.Mount(d.Path); err != nil {
		return nil, errors.Join(fmt.Errorf("mounting image: %w", err), cleanImage())
	}
	if err := os.Chmod(d.Path, 0o777); err != nil {
		return nil, errors.Join(err, unmountRemove(d.Path), os.Remove(d.Image))
	}
	return func() error { return errors.Join(unmountRemove(d.Path), os.Remove(d.Image)) }, nil
}

// CommandRunner runs a command to completion and returns its combined
// output.
type CommandRunner func(*exec.Cmd) ([]byte, error)

// checkFreeDisk refuses a disk volume larger than the free space of the
// filesystem that will hold its (sparse) image: a sizeLimit the node cannot
// back would fail later, inside the container, as a full disk of the node.
func checkFreeDisk(d Dir) error {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(d.Image), &st); err != nil {
		return fmt.Errorf("statfs of the volume dir: %w", err)
	}
	if free := int64(st.Bavail) * st.Bsize; d.Size > free {
		return &PolicyError{Field: "sizeLimit", Value: fmtBytes(d.Size), Reason: "the node has " + fmtBytes(free) + " free for pod volumes",
			Allowed: "a sizeLimit the node's disk can hold"}
	}
	return nil
}

// unmountRemove detaches every mount at or under p and removes the empty
// mount point.
func unmountRemove(p string) error {
	if err := mount.UnmountRecursive(p, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmounting %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// Cleanup undoes Prepare and PinSources for a whole pod from its directory
// alone (usable after a shim restart): it detaches every mount under
// podDir, removes the shm, volumes, images and pins directories, and podDir
// itself when empty. Other files in podDir are kept. It is idempotent.
func Cleanup(podDir string) error {
	if !filepath.IsAbs(podDir) || filepath.Clean(podDir) == "/" {
		return fmt.Errorf("cleaning up pod: bad pod dir %q", podDir)
	}
	podDir = filepath.Clean(podDir)
	if _, err := os.Stat(podDir); os.IsNotExist(err) {
		return nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(podDir))
	if err != nil {
		return fmt.Errorf("cleaning up pod: %w", err)
	}
	for _, m := range mounts {
		if m.Mountpoint == podDir {
			continue
		}
		if err := mount.UnmountRecursive(m.Mountpoint, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("cleaning up pod: %w", err)
		}
	}
	if left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(podDir)); err != nil || len(left) > 1 ||
		len(left) == 1 && left[0].Mountpoint != podDir {
		return fmt.Errorf("cleaning up pod: mounts left under %s (%v)", podDir, err)
	}
	for _, sub := range []string{"shm", "volumes", "images", "pins"} {
		if err := os.RemoveAll(filepath.Join(podDir, sub)); err != nil {
			return fmt.Errorf("cleaning up pod: %w", err)
		}
	}
	if err := os.Remove(podDir); err != nil && !os.IsNotExist(err) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("cleaning up pod: %w", err)
	}
	return nil
}
