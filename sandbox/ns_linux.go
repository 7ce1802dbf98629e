package sandbox

import (
	"errors"
	"fmt"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ProcResolver is the real NamespaceResolver: it opens the path (following
// /proc's magic links, which is what the runtime will do too) and asks the
// kernel which namespace the file is (NS_GET_NSTYPE) and its identity
// (device and inode of the nsfs file).
type ProcResolver struct{}

var _ NamespaceResolver = ProcResolver{}

var nsTypes = map[int]specs.LinuxNamespaceType{
	unix.CLONE_NEWNET: specs.NetworkNamespace, unix.CLONE_NEWPID: specs.PIDNamespace,
	unix.CLONE_NEWIPC: specs.IPCNamespace, unix.CLONE_NEWUTS: specs.UTSNamespace,
	unix.CLONE_NEWNS: specs.MountNamespace, unix.CLONE_NEWCGROUP: specs.CgroupNamespace,
	unix.CLONE_NEWUSER: specs.UserNamespace, unix.CLONE_NEWTIME: specs.TimeNamespace,
}

// Resolve implements NamespaceResolver.
func (ProcResolver) Resolve(path string) (NSRef, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return NSRef{}, fmt.Errorf("opening %s: %w", path, err)
	}
	defer unix.Close(fd)
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return NSRef{}, fmt.Errorf("%s is not a namespace file: %w", path, err)
	}
	typ, ok := nsTypes[t]
	if !ok {
		return NSRef{}, fmt.Errorf("%s: unknown namespace type %#x", path, t)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return NSRef{}, err
	}
	return NSRef{Type: typ, Dev: st.Dev, Ino: st.Ino}, nil
}

// procNames are /proc/<pid>/ns entries by type.
var procNames = map[specs.LinuxNamespaceType]string{
	specs.NetworkNamespace: "net", specs.PIDNamespace: "pid", specs.IPCNamespace: "ipc",
	specs.UTSNamespace: "uts", specs.MountNamespace: "mnt", specs.CgroupNamespace: "cgroup",
}

// ReadNamespaces reads the namespaces of a process (the sandbox's task, or
// a container's) for PodState.RecordNamespaces.
func ReadNamespaces(pid int) ([]NSRef, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("reading namespaces: bad pid %d", pid)
	}
	return readNamespaces(strconv.Itoa(pid))
}

// ReadHostNamespaces reads the host's namespaces for
// Config.HostNamespaces: the shim's own (containerd starts shims in the
// host's namespaces), and init's (pid 1) where this process may read them.
func ReadHostNamespaces() ([]NSRef, error) {
	out, err := readNamespaces("self")
	if err != nil {
		return nil, err
	}
	if init, err := readNamespaces("1"); err == nil {
		out = append(out, init...)
	}
	return out, nil
}

func readNamespaces(proc string) ([]NSRef, error) {
	var out []NSRef
	var errs []error
	for _, t := range podNamespaceTypes {
		ref, err := ProcResolver{}.Resolve("/proc/" + proc + "/ns/" + procNames[t])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ref)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("reading namespaces of /proc/%s: %w", proc, errors.Join(errs...))
	}
	return out, nil
}
