package podmetrics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// errCgroupGone: the container's cgroup does not exist (any more).
var errCgroupGone = errors.New("cgroup is gone")

// cgroupFigures are what one container's cgroups say.
type cgroupFigures struct {
	cpu      *CPUStats
	mem      *MemoryStats
	pressure *PressureStats
	io       *DeviceIO
}

// cgroupReader reads a container's cgroups under root (/sys/fs/cgroup): v1
// controllers, v2, or v1 with the unified hierarchy beside it (hybrid), where
// only the pressure files are read from the unified side.
type cgroupReader struct {
	root     string
	procRoot string // /proc: blkio names devices from <procRoot>/partitions
}

func (r cgroupReader) unified() bool { return exists(filepath.Join(r.root, "cgroup.controllers")) }

// unifiedRoot is where the v2 hierarchy is: root itself, <root>/unified on
// a hybrid host, "" when there is none.
func (r cgroupReader) unifiedRoot() string {
	if r.unified() {
		return r.root
	}
	if u := filepath.Join(r.root, "unified"); exists(filepath.Join(u, "cgroup.controllers")) {
		return u
	}
	return ""
}

// read reads the cgroup at group (a path below the hierarchy root, e.g.
// "/k8s.io/<id>") for a container whose rootfs is dev (nil: none).
func (r cgroupReader) read(group string, dev *BlockDevice) (cgroupFigures, error) {
	var f cgroupFigures
	var errs []error
	if !exists(filepath.Join(r.root, group)) && !exists(filepath.Join(r.root, "memory", group)) && !exists(filepath.Join(r.root, "cpuacct", group)) {
		return f, errCgroupGone
	}
	if r.unified() {
		m, err := cgroup2.Load(group, cgroup2.WithMountpoint(r.root))
		if err == nil {
			st, serr := m.Stat()
			if serr != nil {
				errs = append(errs, fmt.Errorf("cgroup v2 %s: %w", group, serr))
			}
			f.cpu, f.mem, f.io = FromCgroupV2(st, dev)
		} else {
			errs = append(errs, fmt.Errorf("cgroup v2 %s: %w", group, err))
		}
		if f.cpu != nil {
			f.cpu.QuotaMicros, f.cpu.PeriodMicros = readCPUMax(filepath.Join(r.root, group, "cpu.max"))
		}
	} else {
		cg, err := cgroup1.Load(cgroup1.StaticPath(group), cgroup1.WithHierarchy(r.v1Subsystems))
		if err == nil {
			st, serr := cg.Stat(cgroup1.IgnoreNotExist)
			if serr != nil {
				errs = append(errs, fmt.Errorf("cgroup v1 %s: %w", group, serr))
			}
			f.cpu, f.mem, f.io = FromCgroupV1(st, dev)
		} else {
			errs = append(errs, fmt.Errorf("cgroup v1 %s: %w", group, err))
		}
		if f.cpu != nil {
			dir := filepath.Join(r.root, "cpu", group)
			f.cpu.QuotaMicros = readInt(filepath.Join(dir, "cpu.cfs_quota_us"))
			f.cpu.PeriodMicros = uint64(max(0, readInt(filepath.Join(dir, "cpu.cfs_period_us"))))
		}
	}
	if u := r.unifiedRoot(); u != "" {
		f.pressure = readPressure(filepath.Join(u, group))
	}
	return f, errors.Join(errs...)
}

// v1Subsystems are the controllers the figures come from; memory's kernel
// and swap accounting files are optional.
func (r cgroupReader) v1Subsystems() ([]cgroup1.Subsystem, error) {
	return []cgroup1.Subsystem{
		cgroup1.NewCpu(r.root),
		cgroup1.NewCpuacct(r.root),
		cgroup1.NewMemory(r.root, cgroup1.IgnoreModules("kmem", "kmem.tcp"), cgroup1.OptionalSwap()),
		cgroup1.NewBlkio(r.root, cgroup1.ProcRoot(r.procRoot)),
	}, nil
}

// readPressure reads the PSI files of a v2 cgroup directory; missing files
// (a kernel without PSI) leave their resource nil.
func readPressure(dir string) *PressureStats {
	var p PressureStats
	for _, res := range []struct {
		file string
		dst  **PSI
	}{{"cpu.pressure", &p.CPU}, {"memory.pressure", &p.Memory}, {"io.pressure", &p.IO}} {
		f, err := os.Open(filepath.Join(dir, res.file))
		if err != nil {
			continue
		}
		*res.dst, _ = ParsePSI(f)
		f.Close()
	}
	if p.CPU == nil && p.Memory == nil && p.IO == nil {
		return nil
	}
	return &p
}

// readCPUMax reads a v2 cpu.max ("max 100000" or "50000 100000").
func readCPUMax(path string) (quota int64, period uint64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	q, p, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok {
		return 0, 0
	}
	pv, err := strconv.ParseUint(p, 10, 64)
	if err != nil {
		return 0, 0
	}
	if q == "max" {
		return -1, pv
	}
	qv, err := strconv.ParseInt(q, 10, 64)
	if err != nil {
		return 0, 0
	}
	return qv, pv
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0
	}
	return v
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
