package logfwd

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Skip reasons reported in Stats.Skipped.
const (
	SkipSymlink     = "symlink"       // a file or directory that is a symlink
	SkipNotRegular  = "not_regular"   // FIFO, socket, device node, directory
	SkipNameTooLong = "name_too_long" // file name over MaxFileNameLen (R19)
	SkipOutside     = "outside"       // resolution would leave the log directory
	SkipLimit       = "limit"         // over Config.MaxFiles
	SkipOpenError   = "open_error"    // any other open/stat failure
)

// confiner opens paths beneath a trusted root descriptor without following
// symlinks (R20).
type confiner struct {
	noOpenat2 bool // use the O_NOFOLLOW walk (openat2 missing, or tests)
}

// openBeneath opens rel (slash-separated, relative) beneath dirfd with
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, falling back to an O_NOFOLLOW walk
// when openat2 is ENOSYS.
func (c *confiner) openBeneath(dirfd int, rel string, flags int) (int, error) {
	if !c.noOpenat2 {
		how := unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		}
		for i := 0; ; i++ {
			fd, err := unix.Openat2(dirfd, rel, &how)
			switch {
			case err == nil:
				return fd, nil
			case errors.Is(err, unix.ENOSYS):
				c.noOpenat2 = true
				return c.walk(dirfd, rel, flags)
			case (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)) && i < 8:
				continue // a concurrent rename; retry
			default:
				return -1, err
			}
		}
	}
	return c.walk(dirfd, rel, flags)
}

// walk opens each component with O_NOFOLLOW; ".." and absolute paths are
// refused outright.
func (c *confiner) walk(dirfd int, rel string, flags int) (int, error) {
	if strings.HasPrefix(rel, "/") {
		return -1, unix.EXDEV
	}
	parts := strings.Split(rel, "/")
	cur := dirfd
	closeCur := func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}
	for i, p := range parts {
		if p == ".." {
			closeCur()
			return -1, unix.EXDEV
		}
		if p == "" || p == "." {
			if i == len(parts)-1 {
				return -1, unix.EINVAL
			}
			continue
		}
		if i == len(parts)-1 {
			fd, err := unix.Openat(cur, p, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			closeCur()
			return fd, err
		}
		fd, err := unix.Openat(cur, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) {
				// O_PATH|O_DIRECTORY|O_NOFOLLOW on a symlink gives ENOTDIR.
				var st unix.Stat_t
				if unix.Fstatat(cur, p, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
					err = unix.ELOOP
				}
			}
			closeCur()
			return -1, err
		}
		closeCur()
		cur = fd
	}
	return -1, unix.EINVAL
}

// openedFile is a regular file opened for reading.
type openedFile struct {
	fd       int
	dev, ino uint64
	size     int64
}

// openRegular opens name beneath dirfd for reading only if it is a regular
// file. It first opens an O_PATH descriptor (no side effects even on a
// device node or FIFO), checks its type with fstat, then reopens that very
// inode through /proc/self/fd with O_RDONLY|O_NONBLOCK. The returned reason
// is one of the Skip* constants when err != nil.
func (c *confiner) openRegular(dirfd int, name string) (openedFile, string, error) {
	pfd, err := c.openBeneath(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return openedFile{}, reasonFor(err), fmt.Errorf("open %q: %w", name, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return openedFile{}, SkipOpenError, fmt.Errorf("stat %q: %w", name, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return openedFile{}, SkipSymlink, fmt.Errorf("%q is a symlink", name)
	default:
		return openedFile{}, SkipNotRegular, fmt.Errorf("%q is not a regular file (mode %#o)", name, st.Mode)
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return openedFile{}, SkipOpenError, fmt.Errorf("reopen %q: %w", name, err)
	}
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil || st2.Ino != st.Ino || st2.Dev != st.Dev || st2.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return openedFile{}, SkipOpenError, fmt.Errorf("reopen %q: inode changed", name)
	}
	return openedFile{fd: fd, dev: uint64(st2.Dev), ino: st2.Ino, size: st2.Size}, "", nil
}

func reasonFor(err error) string {
	switch {
	case errors.Is(err, unix.ELOOP):
		return SkipSymlink
	case errors.Is(err, unix.EXDEV):
		return SkipOutside
	case errors.Is(err, unix.ENOTDIR):
		return SkipNotRegular
	}
	return SkipOpenError
}
