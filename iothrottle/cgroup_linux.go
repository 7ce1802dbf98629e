package iothrottle

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/internal/cgroupfile"
)

// DeviceIOStats is the I/O that passed a cgroup's throttle on one device,
// read from blkio.throttle.io_service_bytes / io_serviced (v1) or io.stat
// (v2).
type DeviceIOStats struct {
	ReadBytes  uint64 `json:"read_bytes"`
	WriteBytes uint64 `json:"write_bytes"`
	ReadIOs    uint64 `json:"read_ios"`
	WriteIOs   uint64 `json:"write_ios"`
}

// ApplyToCgroup sets l on device major:minor in the existing cgroup at
// cgroupPath (relative to the hierarchy root, e.g. "/kata_<sandbox>"; not
// the systemd "slice:prefix:name" form), for a sandbox whose VMM does the
// disk I/O. It uses cgroup v2 io.max on a unified host and the v1 blkio
// throttle files otherwise. Fields of l that are 0 clear that limit, so
// ApplyToCgroup(path, maj, min, DeviceLimits{}) removes the throttle.
func ApplyToCgroup(cgroupPath string, major, minor int64, l DeviceLimits) error {
	return hostCgroups().apply(cgroupPath, major, minor, l)
}

// DeviceStats reads the I/O statistics of device major:minor in the cgroup
// at cgroupPath; a device without I/O yet has zero stats.
func DeviceStats(cgroupPath string, major, minor int64) (DeviceIOStats, error) {
	return hostCgroups().stats(cgroupPath, major, minor)
}

// cgroupFS is the host's cgroup layout; tests point it at fixture trees.
type cgroupFS struct {
	unified bool
	root    string // v1: parent of "blkio"; v2: the unified mount
}

func hostCgroups() cgroupFS {
	return cgroupFS{unified: cgroups.Mode() == cgroups.Unified, root: "/sys/fs/cgroup"}
}

func checkCgroupPath(p string) error {
	if !strings.HasPrefix(p, "/") || strings.Contains(p, ":") || filepath.Clean(p) != p {
		return fmt.Errorf("cgroup path %q: want an absolute, clean hierarchy path", p)
	}
	return nil
}

func (c cgroupFS) apply(cgroupPath string, major, minor int64, l DeviceLimits) error {
	if err := checkCgroupPath(cgroupPath); err != nil {
		return err
	}
	if c.unified {
		m, err := cgroup2.Load(cgroupPath, cgroup2.WithMountpoint(c.root))
		if err != nil {
			return fmt.Errorf("load cgroup %s: %w", cgroupPath, err)
		}
		if err := m.Update(&cgroup2.Resources{IO: &cgroup2.IO{Max: ioMaxEntries(major, minor, l)}}); err != nil {
			return fmt.Errorf("set io.max in %s: %w", cgroupPath, cgroupfile.Removed(err))
		}
		return nil
	}
	// Not cgroup1's Update: it would recreate a cgroup its runtime has
	// just removed (package cgroupfile). A 0 rate removes the device's
	// limit.
	dir := filepath.Join(c.root, "blkio", cgroupPath)
	dev := fmt.Sprintf("%d:%d ", major, minor)
	for _, f := range []struct {
		name string
		rate uint64
	}{
		{"blkio.throttle.read_bps_device", l.ReadBps}, {"blkio.throttle.write_bps_device", l.WriteBps},
		{"blkio.throttle.read_iops_device", l.ReadIOPS}, {"blkio.throttle.write_iops_device", l.WriteIOPS},
	} {
		if err := cgroupfile.Write(dir, f.name, dev+strconv.FormatUint(f.rate, 10)); err != nil {
			return fmt.Errorf("set blkio throttle in %s: %w", cgroupPath, err)
		}
	}
	return nil
}

// stats reads the I/O counters of device major:minor once (OpenDeviceCounters).
func (c cgroupFS) stats(cgroupPath string, major, minor int64) (DeviceIOStats, error) {
	d, err := c.openCounters(cgroupPath, major, minor)
	if err != nil {
		return DeviceIOStats{}, err
	}
	defer d.Close()
	return d.Read()
}

// DeviceCounters reads the I/O counters of one device in one cgroup
// straight from the cgroup's files, opened once: io.stat on v2; on v1
// blkio.throttle.io_service_bytes and io_serviced (their _recursive forms
// where the kernel has them, so I/O of child cgroups counts, as their
// limits do). A read is then a pread per file, with no path walk through
// the hierarchy, no descriptor registered with the runtime's poller (which
// os.File would do for kernfs files) and no /proc/partitions lookup
// (cgroups/v3's Stat reads that and every blkio file on each call): the
// start burst watcher and the stats file read these counters several times
// a second per pod. A cgroup removed while its files are open answers
// ENODEV. Safe for concurrent use.
type DeviceCounters struct {
	path    string
	dev     string
	unified bool

	mu  sync.Mutex // guards the fields below
	fds []int      // v2: io.stat; v1: io_service_bytes, io_serviced; nil once closed
	buf []byte
}

// OpenDeviceCounters opens the counters of device major:minor in the
// existing cgroup at cgroupPath (hierarchy path as for ApplyToCgroup). The
// caller must Close them.
func OpenDeviceCounters(cgroupPath string, major, minor int64) (*DeviceCounters, error) {
	return hostCgroups().openCounters(cgroupPath, major, minor)
}

func (c cgroupFS) openCounters(cgroupPath string, major, minor int64) (_ *DeviceCounters, err error) {
	if err := checkCgroupPath(cgroupPath); err != nil {
		return nil, err
	}
	d := &DeviceCounters{path: cgroupPath, dev: fmt.Sprintf("%d:%d", major, minor), unified: c.unified, buf: make([]byte, 512)}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if c.unified {
		fd, err := openStatFile(filepath.Join(c.root, cgroupPath, "io.stat"))
		if err != nil {
			return nil, fmt.Errorf("open io.stat of %s: %w", cgroupPath, err)
		}
		d.fds = append(d.fds, fd)
		return d, nil
	}
	dir := filepath.Join(c.root, "blkio", cgroupPath)
	for _, name := range []string{"blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"} {
		fd, err := openStatFile(filepath.Join(dir, name+"_recursive"))
		if errors.Is(err, fs.ErrNotExist) {
			fd, err = openStatFile(filepath.Join(dir, name))
		}
		if err != nil {
			return nil, fmt.Errorf("open %s of %s: %w", name, cgroupPath, err)
		}
		d.fds = append(d.fds, fd)
	}
	return d, nil
}

func openStatFile(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// Read returns the device's counters now; a device without I/O yet has
// zero counters.
func (d *DeviceCounters) Read() (DeviceIOStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fds == nil {
		return DeviceIOStats{}, fmt.Errorf("counters of %s in %s: %w", d.dev, d.path, fs.ErrClosed)
	}
	var s DeviceIOStats
	for i, fd := range d.fds {
		data, err := preadAll(fd, d.buf)
		if err != nil {
			return DeviceIOStats{}, fmt.Errorf("read the I/O counters of %s: %w", d.path, err)
		}
		d.buf = data[:cap(data)]
		switch {
		case d.unified:
			s = parseIOStat(data, d.dev)
		case i == 0:
			s.ReadBytes, s.WriteBytes = parseBlkioStat(data, d.dev)
		default:
			s.ReadIOs, s.WriteIOs = parseBlkioStat(data, d.dev)
		}
	}
	return s, nil
}

// Close closes the files; it is idempotent and safe on nil.
func (d *DeviceCounters) Close() error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, fd := range d.fds {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, err)
		}
	}
	d.fds = nil
	return errors.Join(errs...)
}

// preadAll reads a whole statistics file from its start into buf, growing
// it, in one pread: a kernfs file is generated afresh at each read, so a
// file read in pieces could mix two generations of its counters.
func preadAll(fd int, buf []byte) ([]byte, error) {
	for {
		n, err := unix.Pread(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n < len(buf) {
			return buf[:n], nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// parseIOStat reads dev's line of a v2 io.stat ("8:0 rbytes=1 wbytes=2
// rios=3 wios=4 dbytes=0 dios=0").
func parseIOStat(data []byte, dev string) DeviceIOStats {
	var s DeviceIOStats
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != dev {
			continue
		}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				s.ReadBytes = n
			case "wbytes":
				s.WriteBytes = n
			case "rios":
				s.ReadIOs = n
			case "wios":
				s.WriteIOs = n
			}
		}
	}
	return s
}

// parseBlkioStat reads dev's Read and Write lines of a v1 blkio statistics
// file ("7:3 Read 4096").
func parseBlkioStat(data []byte, dev string) (read, write uint64) {
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != dev {
			continue
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read = n
		case "Write":
			write = n
		}
	}
	return read, write
}

// ioMaxEntries renders l for io.max; unlimited is max (2^64-1 parses as
// "max" in the kernel).
func ioMaxEntries(major, minor int64, l DeviceLimits) []cgroup2.Entry {
	rate := func(v uint64) uint64 {
		if v == 0 {
			return math.MaxUint64
		}
		return v
	}
	return []cgroup2.Entry{
		{Type: cgroup2.ReadBPS, Major: major, Minor: minor, Rate: rate(l.ReadBps)},
		{Type: cgroup2.WriteBPS, Major: major, Minor: minor, Rate: rate(l.WriteBps)},
		{Type: cgroup2.ReadIOPS, Major: major, Minor: minor, Rate: rate(l.ReadIOPS)},
		{Type: cgroup2.WriteIOPS, Major: major, Minor: minor, Rate: rate(l.WriteIOPS)},
	}
}
