package logfwd

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// newFileSink opens (creating it) the sink file Name beneath Dir.
func newFileSink(cfg FileSinkConfig, pod PodIdentity) (*fileSink, error) {
	dir, name, err := cfg.dirName()
	if err != nil {
		return nil, err
	}
	f, err := openSinkFile(dir, name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat file sink: %w", err)
	}
	return &fileSink{f: f, pod: pod, pos: st.Size()}, nil
}

// openSinkFile opens dir/name for writing, creating it 0640, with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS) and
// O_NOFOLLOW (O_NOFOLLOW alone where openat2 is missing: name is one
// component). O_NONBLOCK keeps a FIFO planted there from blocking the open.
// Only a regular file with no other hard link is accepted.
func openSinkFile(dir, name string) (*os.File, error) {
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open file sink dir %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	how := unix.OpenHow{Flags: uint64(flags), Mode: 0o640,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dfd, name, &how)
	for i := 0; i < 8 && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)); i++ {
		fd, err = unix.Openat2(dfd, name, &how)
	}
	if errors.Is(err, unix.ENOSYS) {
		fd, err = unix.Openat(dfd, name, flags, 0o640)
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("file sink %s in %s is a symlink; a regular file is required", name, dir)
	case errors.Is(err, unix.ENXIO):
		return nil, fmt.Errorf("file sink %s in %s is a FIFO or socket; a regular file is required", name, dir)
	case err != nil:
		return nil, fmt.Errorf("open file sink %s in %s: %w", name, dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat file sink %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("file sink %s in %s has mode %#o; a regular file is required", name, dir, st.Mode)
	}
	if st.Nlink > 1 {
		unix.Close(fd)
		return nil, fmt.Errorf("file sink %s in %s has %d hard links; a file of its own is required", name, dir, st.Nlink)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("file sink %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), dir+"/"+name), nil
}
