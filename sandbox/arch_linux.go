package sandbox

import (
	"io"
	"os"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// CheckArch reads the ELF header of spec's entrypoint (process.args[0],
// resolved against PATH from process.env) inside rootfs and returns an
// *ArchError when it is built for an architecture hostArch (a GOARCH name,
// runtime.GOARCH) cannot run. Resolution stays inside rootfs
// (openat2 RESOLVE_IN_ROOT: absolute symlinks and ".." resolve against the
// rootfs). An unreachable rootfs, a missing or unreadable entrypoint, a
// script (#!) or a non-ELF file yield nil: the runtime reports those.
func CheckArch(rootfs string, spec *specs.Spec, container, hostArch string) error {
	if spec == nil || spec.Process == nil || len(spec.Process.Args) == 0 || spec.Process.Args[0] == "" {
		return nil
	}
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer root.Close()
	for _, p := range candidates(spec.Process) {
		h, ok := readHeader(int(root.Fd()), p)
		if ok {
			return checkELF(container, p, h, hostArch)
		}
	}
	return nil
}

// candidates lists the paths args[0] may name, in PATH order.
func candidates(p *specs.Process) []string {
	arg := p.Args[0]
	if strings.Contains(arg, "/") {
		if !path.IsAbs(arg) {
			arg = path.Join("/", p.Cwd, arg)
		}
		return []string{arg}
	}
	search := defaultPath
	for _, e := range p.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			search = v
		}
	}
	var out []string
	for _, dir := range strings.Split(search, ":") {
		if dir == "" {
			dir = "."
		}
		out = append(out, path.Join("/", p.Cwd, dir, arg))
		if path.IsAbs(dir) {
			out[len(out)-1] = path.Join(dir, arg)
		}
	}
	return out
}

// readHeader opens name under root without leaving it and reads the first
// 20 bytes of a regular file.
func readHeader(root int, name string) ([]byte, bool) {
	fd, err := unix.Openat2(root, strings.TrimPrefix(name, "/"), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return nil, false
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, false
	}
	h := make([]byte, 20)
	if _, err := io.ReadFull(f, h); err != nil {
		return h, true // too short for ELF: not an error, like a script
	}
	return h, true
}
