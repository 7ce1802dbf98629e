package podmetrics

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// NetNS is a pod's network namespace, held open. The endpoint's socket is
// created inside it and its interface counters are read inside it; nothing
// of this process runs in it otherwise.
type NetNS struct {
	f *os.File
}

// OpenNetNS opens the network namespace at path: a bind-mounted namespace
// file (CRI's pod netns) or /proc/<pid>/ns/net. It refuses a file that is not
// a network namespace, and the namespace this process (and, where it may be
// read, init) runs in: the host's, where the endpoint would listen on host
// addresses.
func OpenNetNS(path string) (*NetNS, error) {
	// Non-blocking: where the path came from a tenant's spec, a FIFO there
	// must not hang the caller (the type check below refuses it).
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace: %w", err)
	}
	ns := &NetNS{f: f}
	if err := ns.check(); err != nil {
		f.Close()
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return ns, nil
}

func (ns *NetNS) check() error {
	kind, err := unix.IoctlRetInt(int(ns.f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("not a namespace: %w", err)
	}
	if kind != unix.CLONE_NEWNET {
		return fmt.Errorf("a namespace of type %#x, not a network namespace", kind)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns.f.Fd()), &st); err != nil {
		return err
	}
	// thread-self: the calling thread is one of the process's ordinary
	// threads (inNS never lets the main thread join), so its namespace is
	// the host's.
	for _, host := range []string{"/proc/thread-self/ns/net", "/proc/1/ns/net"} {
		var hs unix.Stat_t
		if err := unix.Stat(host, &hs); err != nil {
			if host == "/proc/1/ns/net" && errors.Is(err, unix.EACCES) {
				continue // init may be out of reach (a sandboxed host); ours is the host's
			}
			return fmt.Errorf("identifying the host's network namespace: %w", err)
		}
		if hs.Dev == st.Dev && hs.Ino == st.Ino {
			return fmt.Errorf("it is the host's network namespace (%s): the pod metrics endpoint never listens on a host address", host)
		}
	}
	return nil
}

// Close releases the namespace.
func (ns *NetNS) Close() error { return ns.f.Close() }

// inNS runs fn on a thread that has joined the namespace. The thread stays
// locked and ends with the goroutine, so it never runs anything else there
// and no thread of this process is left in the pod's namespace.
func (ns *NetNS) inNS(fn func() error) error {
	done := make(chan error, 1)
	go ns.runLocked(fn, done)
	return <-done
}

func (ns *NetNS) runLocked(fn func() error, done chan<- error) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// The runtime never ends the main thread, so it must not join:
		// hold it while another thread does the work.
		inner := make(chan error, 1)
		go ns.runLocked(fn, inner)
		done <- <-inner
		runtime.UnlockOSThread()
		return
	}
	// No UnlockOSThread from here: the runtime ends a thread whose
	// goroutine exits locked.
	if err := unix.Setns(int(ns.f.Fd()), unix.CLONE_NEWNET); err != nil {
		done <- fmt.Errorf("joining the pod's network namespace: %w", err)
		return
	}
	done <- fn()
}

// Listen creates a TCP listening socket on every address of the namespace
// (the pod's IP and its loopback) at port. The socket stays in the pod's
// namespace whichever thread serves it.
func (ns *NetNS) Listen(port int) (net.Listener, error) {
	var ln net.Listener
	err := ns.inNS(func() error {
		var err error
		ln, err = net.Listen("tcp", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on port %d in the pod's network namespace: %w", port, err)
	}
	return ln, nil
}

// NetDev reads the namespace's interface counters.
func (ns *NetNS) NetDev() ([]InterfaceStats, error) {
	var out []InterfaceStats
	err := ns.inNS(func() error {
		var err error
		out, err = readNetDev("/proc/thread-self")
		return err
	})
	return out, err
}

// readNetDev reads <procDir>/net/dev, leaving out loopback as cAdvisor does.
func readNetDev(procDir string) ([]InterfaceStats, error) {
	b, err := os.ReadFile(filepath.Join(procDir, "net", "dev"))
	if err != nil {
		return nil, fmt.Errorf("reading interface counters: %w", err)
	}
	out, err := parseNetDev(string(b))
	if err != nil {
		return nil, fmt.Errorf("reading interface counters: %s: %w", filepath.Join(procDir, "net", "dev"), err)
	}
	return out, nil
}

// netDevFields is the number of counters on a net/dev line: eight received
// (bytes packets errs drop fifo frame compressed multicast), eight sent
// (bytes packets errs drop fifo colls carrier compressed).
const netDevFields = 16

// parseNetDev parses the kernel's net/dev table: two header lines, then one
// "name: counters" line per interface (a device name never holds a colon).
// Parsed here rather than with prometheus/procfs, whose package
// initialisation compiles two dozen regular expressions in every shim
// process, on every pod's start, for a table this simple.
func parseNetDev(table string) ([]InterfaceStats, error) {
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "|") || !strings.Contains(lines[1], "|") {
		return nil, fmt.Errorf("not the kernel's net/dev table: it starts with %.80q", lines[0])
	}
	out := make([]InterfaceStats, 0, len(lines)-2)
	for _, line := range lines[2:] {
		name, rest, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if !ok || name == "" || len(f) != netDevFields {
			return nil, fmt.Errorf("line %.120q: want an interface name, a colon and %d counters", line, netDevFields)
		}
		var v [netDevFields]uint64
		for i, s := range f {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("interface %.40q: counter %d: %w", name, i+1, err)
			}
			v[i] = n
		}
		if name == "lo" {
			continue
		}
		out = append(out, InterfaceStats{
			Name: name, RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
