// Package cgroupfile writes the control files of a cgroup that must
// already exist, and never brings one back.
//
// containerd/cgroups' v1 controllers (blkio, cpu and others) run Create on
// Update, which starts with os.MkdirAll of the cgroup's directory. The shim
// writes limits into cgroups others own and remove: a container's cgroup,
// which the OCI runtime removes when the container is deleted, and
// kubelet's pod cgroup. An Update that loads such a cgroup just before its
// owner removes it recreates it, empty, in that one hierarchy, where
// nothing will ever remove it. Writing the file of an existing directory,
// without O_CREAT, fails instead.
package cgroupfile

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Write writes value to the control file name of the cgroup directory dir
// in one write(2). It creates neither the directory nor the file. (O_TRUNC,
// which a cgroup file ignores as a shell's redirection does, makes a plain
// file in a test's fixture tree hold the last value written.) A cgroup
// that is gone, or is removed while the file is open (Removed), gives an
// error that matches fs.ErrNotExist.
func Write(dir, name, value string) error {
	p := filepath.Join(dir, name)
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	for {
		_, err = unix.Write(fd, []byte(value))
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return Removed(&fs.PathError{Op: "write", Path: p, Err: fmt.Errorf("%q: %w", value, err)})
	}
	return nil
}

// Removed returns err, made to match fs.ErrNotExist where it is the ENODEV
// a cgroup's file answers once the cgroup is removed while it is open, so
// that callers test one error for "the cgroup is gone". For the errors of
// writes that do not go through Write (containerd/cgroups' v2 Update).
func Removed(err error) error {
	if errors.Is(err, unix.ENODEV) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (%w: the cgroup was removed)", err, fs.ErrNotExist)
	}
	return err
}
