package logfwd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"
)

// The spool keeps what a pod's collector could not deliver when the pod
// went away (Drain returned ErrNotDrained: the destination was down or
// slow). The pod's log volume is a disk image; instead of being removed with
// the pod it is moved, with the collector's config and checkpoint, into an
// entry of the node's spool dir:
//
//	<spool>/<entry>/volume.img   the pod's log volume (ext4)
//	<spool>/<entry>/config.json  the collector's Config, Root and
//	                             CheckpointPath relative to the entry
//	<spool>/<entry>/checkpoint   what was delivered
//
// DrainSpool (cci-agent runs it periodically) mounts each entry read-only,
// runs a collector from the checkpoint and removes the entry once everything
// was delivered: R18 across the pod's end, nothing lost, nothing repeated.

const (
	spoolImage      = "volume.img"
	spoolConfig     = "config.json"
	spoolCheckpoint = "checkpoint"
	spoolMount      = "mnt"
)

// SpoolVolume moves a pod's unmounted log volume image and its collector's
// state into the entry name (a SinkFileName-like identifier) of spoolDir.
// image must be on spoolDir's filesystem (it is renamed, not copied).
func SpoolVolume(spoolDir, name, image string, cfg Config) error {
	if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
		return fmt.Errorf("spool entry %q: not a file name", name)
	}
	entry := filepath.Join(spoolDir, name)
	if err := os.MkdirAll(entry, 0o700); err != nil {
		return fmt.Errorf("spooling logs: %w", err)
	}
	if err := copySpoolFile(cfg.CheckpointPath, filepath.Join(entry, spoolCheckpoint)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spooling logs: %w", err)
	}
	cfg.Root, cfg.CheckpointPath = "", ""
	data, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(entry, spoolConfig), data, 0o600); err != nil {
		return fmt.Errorf("spooling logs: %w", err)
	}
	if err := os.Rename(image, filepath.Join(entry, spoolImage)); err != nil {
		return fmt.Errorf("spooling logs: %w", err)
	}
	return nil
}

// SpoolResult says what one DrainSpool pass did.
type SpoolResult struct {
	Drained, Left int
}

// DrainSpool tries to deliver every entry of spoolDir, each within
// perEntry, and removes the entries it delivered completely. An entry that
// still cannot be delivered stays (its checkpoint moved on by what was).
func DrainSpool(ctx context.Context, spoolDir string, perEntry time.Duration, logger *slog.Logger) (SpoolResult, error) {
	var res SpoolResult
	entries, err := os.ReadDir(spoolDir)
	if errors.Is(err, os.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || ctx.Err() != nil {
			continue
		}
		dir := filepath.Join(spoolDir, e.Name())
		err := drainEntry(ctx, dir, perEntry, logger)
		switch {
		case err == nil:
			res.Drained++
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		default:
			res.Left++
			if !errors.Is(err, ErrNotDrained) {
				errs = append(errs, fmt.Errorf("spool entry %s: %w", e.Name(), err))
			}
		}
	}
	return res, errors.Join(errs...)
}

func drainEntry(ctx context.Context, dir string, timeout time.Duration, logger *slog.Logger) error {
	data, err := os.ReadFile(filepath.Join(dir, spoolConfig))
	if err != nil {
		return err
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	mnt := filepath.Join(dir, spoolMount)
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return err
	}
	m := mount.Mount{Type: "ext4", Source: filepath.Join(dir, spoolImage), Options: []string{"loop", "ro", "noexec", "nosuid", "nodev"}}
	if err := m.Mount(mnt); err != nil {
		return fmt.Errorf("mounting the spooled volume: %w", err)
	}
	defer mount.UnmountAll(mnt, unix.MNT_DETACH)
	cfg.Root, cfg.CheckpointPath = mnt, filepath.Join(dir, spoolCheckpoint)
	if err := retargetCheckpoint(cfg.CheckpointPath, mnt); err != nil {
		return err
	}
	c, err := New(cfg, logger)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Drain(dctx)
}

// retargetCheckpoint moves a checkpoint's files to the device the volume is
// mounted on now: files are known by (device, inode), and a loop device's
// number changes from one mount to the next while the inodes of the one
// filesystem the checkpoint describes do not.
func retargetCheckpoint(path, mnt string) error {
	cp, ok, err := loadCheckpoint(path)
	if err != nil || !ok {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		return err
	}
	for i := range cp.Files {
		cp.Files[i].Dev = st.Dev
	}
	return saveCheckpoint(path, cp, false)
}

func copySpoolFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
