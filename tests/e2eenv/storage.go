//go:build linux

package e2eenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	xfsImageSize = 64 << 30 // sparse; holds the blockfile snapshots (reflink clones of scratch)
	probeSize    = 32 << 20 // dense file cloned to prove reflink
)

// blockfileRoot and scratchFile are the blockfile snapshotter's paths on the XFS mount.
func (e *Env) blockfileRoot() string { return filepath.Join(e.xfsMount, "blockfile") }
func (e *Env) scratchFile() string   { return filepath.Join(e.xfsMount, "scratch.ext4") }

// setupStorage creates the sparse XFS image with reflink, loop-mounts it at xfsMount, creates
// the blockfile root and the sparse ext4 scratch file on it, and proves that cloning a file
// there shares blocks (the blockfile snapshotter copies scratch with copy_file_range per
// snapshot: without reflink that is a dense copy of the whole scratch file).
func (e *Env) setupStorage(scratchSize int64) error {
	if err := createSparse(e.xfsImage, xfsImageSize); err != nil {
		return err
	}
	if _, err := run(e.tools.mkfsXFS, "-q", "-f", "-K", "-m", "reflink=1", e.xfsImage); err != nil {
		return fmt.Errorf("mkfs.xfs with reflink: %w", err)
	}
	out, err := run(e.tools.losetup, "--find", "--show", e.xfsImage)
	if err != nil {
		return fmt.Errorf("attaching %s: %w", e.xfsImage, err)
	}
	e.xfsLoop = strings.TrimSpace(out)
	if err := unix.Mount(e.xfsLoop, e.xfsMount, "xfs", 0, ""); err != nil {
		return fmt.Errorf("mounting %s (xfs) at %s: %w", e.xfsLoop, e.xfsMount, err)
	}
	if err := os.MkdirAll(e.blockfileRoot(), 0o700); err != nil {
		return fmt.Errorf("creating blockfile root: %w", err)
	}
	if err := checkReflink(e.xfsMount); err != nil {
		return err
	}
	if err := createSparse(e.scratchFile(), scratchSize); err != nil {
		return err
	}
	// Lazy inode table and journal init: mkfs writes only metadata, the file stays sparse.
	if _, err := run(e.tools.mkfsExt4, "-q", "-F", "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1", e.scratchFile()); err != nil {
		return fmt.Errorf("mkfs.ext4 on the scratch file: %w", err)
	}
	return nil
}

// checkReflink proves on the filesystem at dir that FICLONE works and that copy_file_range (what
// containerd's blockfile snapshotter uses) clones instead of copying.
func checkReflink(dir string) error {
	src := filepath.Join(dir, ".reflink-probe")
	defer os.Remove(src)
	if err := os.WriteFile(src, bytes.Repeat([]byte{0xa5}, probeSize), 0o600); err != nil {
		return fmt.Errorf("writing reflink probe: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening reflink probe: %w", err)
	}
	defer in.Close()
	if err := in.Sync(); err != nil {
		return fmt.Errorf("syncing reflink probe: %w", err)
	}

	clone := filepath.Join(dir, ".reflink-clone")
	defer os.Remove(clone)
	out, err := os.Create(clone)
	if err != nil {
		return fmt.Errorf("creating reflink clone: %w", err)
	}
	defer out.Close()
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		return fmt.Errorf("FICLONE on %s failed (%w): the filesystem has no reflink; the blockfile snapshotter would copy the whole scratch file per snapshot, refusing", dir, err)
	}

	copied := filepath.Join(dir, ".reflink-copy")
	defer os.Remove(copied)
	cp, err := os.Create(copied)
	if err != nil {
		return fmt.Errorf("creating copy probe: %w", err)
	}
	defer cp.Close()
	before, err := freeBytes(dir)
	if err != nil {
		return err
	}
	start := time.Now()
	var done int64
	for done < probeSize {
		n, err := unix.CopyFileRange(int(in.Fd()), nil, int(cp.Fd()), nil, int(probeSize-done), 0)
		if err != nil {
			return fmt.Errorf("copy_file_range on %s: %w", dir, err)
		}
		if n == 0 {
			return fmt.Errorf("copy_file_range on %s: short copy (%d of %d bytes)", dir, done, probeSize)
		}
		done += int64(n)
	}
	if err := cp.Sync(); err != nil {
		return fmt.Errorf("syncing copy probe: %w", err)
	}
	took := time.Since(start)
	after, err := freeBytes(dir)
	if err != nil {
		return err
	}
	if used := before - after; used > probeSize/4 {
		return fmt.Errorf("copy_file_range of %d MiB on %s used %d MiB of space in %v: it copies instead of cloning, so every snapshot would copy the whole scratch file densely; refusing", probeSize>>20, dir, used>>20, took)
	}
	return nil
}

func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bfree) * st.Bsize, nil
}

func createSparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("sizing %s to %d bytes: %w", path, size, err)
	}
	return nil
}

// run runs a host tool with a 2-minute limit and returns its stdout; the error carries stderr.
func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "PATH="+systemPath)
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg = "timed out; " + msg
		}
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, msg)
	}
	return stdout.String(), nil
}

// runDirs are the env's state dirs that a node keeps under /run, a tmpfs:
// containerd's state (/run/containerd) and the cci shims' state_dir
// (/run/cci-shim, which the shim documents must be on tmpfs). On disk, their
// per-container files would cost what a node does not pay: on an ext4 /tmp
// that has seen many files come and go, allocating an inode scans past the
// recently deleted ones.
func (e *Env) runDirs() []string { return []string{e.containerdState, e.StateDir} }

// mountRunDirs mounts a tmpfs on each of runDirs, as /run is mounted
// (nosuid, nodev). Teardown unmounts them with everything else under Dir.
func (e *Env) mountRunDirs() error {
	for _, d := range e.runDirs() {
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0711,size=1g"); err != nil {
			return fmt.Errorf("mounting a tmpfs at %s: %w", d, err)
		}
	}
	return nil
}
