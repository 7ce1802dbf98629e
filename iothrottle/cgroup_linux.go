package iothrottle

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	unified  bool
	root     string // v1: parent of "blkio"; v2: the unified mount
	procRoot string // v1 stats read <procRoot>/partitions
}

func hostCgroups() cgroupFS {
	return cgroupFS{unified: cgroups.Mode() == cgroups.Unified, root: "/sys/fs/cgroup", procRoot: "/proc"}
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
			return fmt.Errorf("set io.max in %s: %w", cgroupPath, err)
		}
		return nil
	}
	cg, err := c.loadV1(cgroupPath)
	if err != nil {
		return err
	}
	if err := cg.Update(&specs.LinuxResources{BlockIO: blkioThrottle(major, minor, l)}); err != nil {
		return fmt.Errorf("set blkio throttle in %s: %w", cgroupPath, err)
	}
	return nil
}

func (c cgroupFS) loadV1(cgroupPath string) (cgroup1.Cgroup, error) {
	blkioOnly := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{cgroup1.NewBlkio(c.root, cgroup1.ProcRoot(c.procRoot))}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(cgroupPath), cgroup1.WithHierarchy(blkioOnly))
	if err != nil {
		return nil, fmt.Errorf("load blkio cgroup %s: %w", cgroupPath, err)
	}
	return cg, nil
}

func (c cgroupFS) stats(cgroupPath string, major, minor int64) (DeviceIOStats, error) {
	if err := checkCgroupPath(cgroupPath); err != nil {
		return DeviceIOStats{}, err
	}
	var s DeviceIOStats
	if c.unified {
		m, err := cgroup2.Load(cgroupPath, cgroup2.WithMountpoint(c.root))
		if err != nil {
			return s, fmt.Errorf("load cgroup %s: %w", cgroupPath, err)
		}
		st, err := m.StatFiltered(cgroup2.StatIO)
		if err != nil {
			return s, fmt.Errorf("read io.stat of %s: %w", cgroupPath, err)
		}
		for _, e := range st.GetIo().GetUsage() {
			if e.Major == uint64(major) && e.Minor == uint64(minor) {
				s.ReadBytes, s.WriteBytes, s.ReadIOs, s.WriteIOs = e.Rbytes, e.Wbytes, e.Rios, e.Wios
			}
		}
		return s, nil
	}
	cg, err := c.loadV1(cgroupPath)
	if err != nil {
		return s, err
	}
	st, err := cg.Stat()
	if err != nil {
		return s, fmt.Errorf("read blkio stats of %s: %w", cgroupPath, err)
	}
	b := st.GetBlkio()
	for _, e := range b.GetIoServiceBytesRecursive() {
		if e.Major == uint64(major) && e.Minor == uint64(minor) {
			switch e.Op {
			case "Read":
				s.ReadBytes = e.Value
			case "Write":
				s.WriteBytes = e.Value
			}
		}
	}
	for _, e := range b.GetIoServicedRecursive() {
		if e.Major == uint64(major) && e.Minor == uint64(minor) {
			switch e.Op {
			case "Read":
				s.ReadIOs = e.Value
			case "Write":
				s.WriteIOs = e.Value
			}
		}
	}
	return s, nil
}

// blkioThrottle renders l for the v1 throttle files; a 0 rate written to a
// v1 throttle file removes that device's limit.
func blkioThrottle(major, minor int64, l DeviceLimits) *specs.LinuxBlockIO {
	td := func(rate uint64) []specs.LinuxThrottleDevice {
		d := specs.LinuxThrottleDevice{Rate: rate}
		d.Major, d.Minor = major, minor
		return []specs.LinuxThrottleDevice{d}
	}
	return &specs.LinuxBlockIO{
		ThrottleReadBpsDevice:   td(l.ReadBps),
		ThrottleWriteBpsDevice:  td(l.WriteBps),
		ThrottleReadIOPSDevice:  td(l.ReadIOPS),
		ThrottleWriteIOPSDevice: td(l.WriteIOPS),
	}
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
