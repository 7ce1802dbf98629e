package podmetrics

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
)

// Pod is the pod as the shim sees it at scrape time.
type Pod struct {
	Namespace  string
	Name       string
	Containers []Container
	Logs       *logfwd.Stats // nil without a log policy
}

// Container is one container as the shim sees it.
type Container struct {
	ID   string // the container's id (for BackendStats)
	Name string // the container label: the CRI name, SandboxContainer for the sandbox
	// CgroupsPath is the OCI linux.cgroupsPath the backend got; "" leaves
	// out the cgroup figures.
	CgroupsPath string
	// RootfsDir is where the container's root filesystem is mounted on this
	// host (the backend bundle's rootfs); "" when it is not (a VM's disk).
	RootfsDir string
	Device    *BlockDevice            // the rootfs block device; nil when there is none
	Limits    iothrottle.DeviceLimits // its throttle
	Burst     *iothrottle.BurstStatus // its start burst; nil when it has none
	Stdio     *iothrottle.Stats       // the stdout throttle's counters; nil when off
}

// HostSource reads a pod's figures on the host: each container's cgroups
// (or what the backend's Stats says, where the containers' cgroups are not
// the host's), the pod's network namespace, statfs of each rootfs mounted
// here, and what the shim holds in memory (Pod). It keeps nothing between
// scrapes.
type HostSource struct {
	CgroupRoot string // the cgroup hierarchy's root, /sys/fs/cgroup
	ProcRoot   string // /proc
	NetNS      *NetNS // the pod's network namespace; nil leaves out network figures
	// Pod returns the shim's current view of the pod. It is called once per
	// scrape and must not do I/O.
	Pod func() Pod
	// BackendStats, when set, replaces the host cgroup reads: it returns
	// the backend's Stats for container id, a cgroup v1 or v2 Metrics
	// (*github.com/containerd/cgroups/v3/cgroup1/stats.Metrics or
	// .../cgroup2/stats.Metrics), as kubelet gets them through CRI. For
	// sandboxes whose containers' cgroups live in a guest (Kata).
	BackendStats func(ctx context.Context, id string) (any, error)
	// netDev replaces NetNS.NetDev in tests.
	netDev func() ([]InterfaceStats, error)
}

var _ Source = (*HostSource)(nil)

// Snapshot reads the pod's figures. A figure that cannot be read is left out
// (a container whose cgroup is gone has exited: it keeps its throttle
// counters); the failures are returned together, after everything that could
// be read. Of two containers with one name (a restarted container and the
// exited one kubelet keeps) the running one is reported.
func (h *HostSource) Snapshot(ctx context.Context) (Snapshot, error) {
	p := h.Pod()
	s := Snapshot{Namespace: p.Namespace, Pod: p.Name, Logs: p.Logs}
	var errs []error
	index := map[string]int{}
	for _, c := range p.Containers {
		if ctx.Err() != nil {
			return s, ctx.Err()
		}
		cs, err := h.container(ctx, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %q: %w", c.Name, err))
		}
		if i, dup := index[c.Name]; dup {
			if s.Containers[i].CPU == nil && cs.CPU != nil {
				s.Containers[i] = cs
			}
			continue
		}
		index[c.Name] = len(s.Containers)
		s.Containers = append(s.Containers, cs)
	}
	netDev := h.netDev
	if netDev == nil && h.NetNS != nil {
		netDev = h.NetNS.NetDev
	}
	if netDev != nil {
		n, err := netDev()
		if err != nil {
			errs = append(errs, err)
		}
		s.Network = n
	}
	return s, errors.Join(errs...)
}

// container reads one container's figures.
func (h *HostSource) container(ctx context.Context, c Container) (ContainerStats, error) {
	cs := ContainerStats{Name: c.Name, Stdio: c.Stdio}
	var errs []error
	var io *DeviceIO
	switch {
	case h.BackendStats != nil:
		m, err := h.BackendStats(ctx, c.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("backend stats: %w", err))
		}
		switch m := m.(type) {
		case *v1.Metrics:
			cs.CPU, cs.Memory, io = FromCgroupV1(m, c.Device)
		case *v2.Metrics:
			cs.CPU, cs.Memory, io = FromCgroupV2(m, c.Device)
			cs.Pressure = PressureFromCgroupV2(m)
		case nil:
		default:
			errs = append(errs, fmt.Errorf("backend stats of type %T", m))
		}
	case c.CgroupsPath != "":
		group, err := CgroupGroup(c.CgroupsPath)
		if err != nil {
			errs = append(errs, err)
			break
		}
		f, err := cgroupReader{root: h.CgroupRoot, procRoot: h.ProcRoot}.read(group, c.Device)
		if err != nil && !errors.Is(err, errCgroupGone) {
			errs = append(errs, err)
		}
		cs.CPU, cs.Memory, cs.Pressure, io = f.cpu, f.mem, f.pressure, f.io
	}
	if c.Device != nil {
		cs.Rootfs = &RootfsStats{Device: c.Device.Path, IO: io, Limits: c.Limits}
		if c.Burst != nil {
			active := c.Burst.Active
			cs.Rootfs.BurstActive = &active
		}
		if c.RootfsDir != "" {
			fs, err := statFS(c.RootfsDir, c.Device)
			if err != nil {
				errs = append(errs, err)
			}
			cs.Rootfs.FS = fs
		}
	}
	return cs, errors.Join(errs...)
}

// statFS reads the space and inodes of the filesystem mounted at dir, which
// must be the one on dev: a directory where nothing is mounted (any more)
// would report the filesystem it lives on.
func statFS(dir string, dev *BlockDevice) (*FSUsage, error) {
	var ds unix.Stat_t
	if err := unix.Stat(dir, &ds); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	if got := uint64(ds.Dev); unix.Major(got) != uint32(dev.Major) || unix.Minor(got) != uint32(dev.Minor) {
		return nil, nil // not mounted here: a VM's disk, or the container is gone
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("statfs of the rootfs: %w", err)
	}
	bs := uint64(st.Bsize)
	return &FSUsage{
		UsageBytes:  (st.Blocks - st.Bfree) * bs,
		LimitBytes:  st.Blocks * bs,
		InodesTotal: st.Files,
		InodesFree:  st.Ffree,
	}, nil
}
