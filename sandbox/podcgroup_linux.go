package sandbox

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup2"

	"github.com/cci-shim/cci-shim/internal/cgroupfile"
)

const cgroupRoot = "/sys/fs/cgroup"

// ReadCgroupLimits reads the CPU and memory caps of the cgroup at p
// (relative to the hierarchies' root).
func ReadCgroupLimits(p string) (CgroupLimits, error) {
	if err := cleanCgroupPath(p); err != nil {
		return CgroupLimits{}, err
	}
	read := func(file string) (string, error) {
		b, err := os.ReadFile(file)
		return strings.TrimSpace(string(b)), err
	}
	num := func(s string) (int64, error) {
		if s == "max" {
			return -1, nil
		}
		return strconv.ParseInt(s, 10, 64)
	}
	var l CgroupLimits
	if cgroups.Mode() == cgroups.Unified {
		dir := filepath.Join(cgroupRoot, p)
		mem, err := read(filepath.Join(dir, "memory.max"))
		if err != nil {
			return l, err
		}
		cpu, err := read(filepath.Join(dir, "cpu.max"))
		if err != nil {
			return l, err
		}
		q, per, _ := strings.Cut(cpu, " ")
		if l.Memory, err = num(mem); err != nil {
			return l, fmt.Errorf("%s/memory.max: %w", dir, err)
		}
		if l.Quota, err = num(q); err != nil {
			return l, fmt.Errorf("%s/cpu.max: %w", dir, err)
		}
		l.Period, err = strconv.ParseUint(per, 10, 64)
		return l, err
	}
	mem, err := read(filepath.Join(cgroupRoot, "memory", p, "memory.limit_in_bytes"))
	if err != nil {
		return l, err
	}
	quota, err := read(filepath.Join(cgroupRoot, "cpu", p, "cpu.cfs_quota_us"))
	if err != nil {
		return l, err
	}
	period, err := read(filepath.Join(cgroupRoot, "cpu", p, "cpu.cfs_period_us"))
	if err != nil {
		return l, err
	}
	if l.Memory, err = strconv.ParseInt(mem, 10, 64); err != nil {
		return l, err
	}
	// cgroup v1 says "no limit" with the largest page-aligned int64.
	if l.Memory >= 1<<62 {
		l.Memory = -1
	}
	if l.Quota, err = strconv.ParseInt(quota, 10, 64); err != nil {
		return l, err
	}
	l.Period, err = strconv.ParseUint(period, 10, 64)
	return l, err
}

// WriteCgroupLimits sets the CPU quota and memory cap of the cgroup at p.
func WriteCgroupLimits(p string, l CgroupLimits) error {
	if err := cleanCgroupPath(p); err != nil {
		return err
	}
	if cgroups.Mode() == cgroups.Unified {
		m, err := cgroup2.Load(p)
		if err != nil {
			return err
		}
		mem, quota, period := l.Memory, l.Quota, l.Period
		err = m.Update(&cgroup2.Resources{Memory: &cgroup2.Memory{Max: &mem}, CPU: &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)}})
		return cgroupfile.Removed(err)
	}
	// Not cgroup1's Update, which would recreate the cgroup if kubelet
	// removed it meanwhile (package cgroupfile). The period goes first,
	// as runc writes it, so that the quota is checked against it.
	for _, f := range []struct{ controller, file, value string }{
		{"cpu", "cpu.cfs_period_us", strconv.FormatUint(l.Period, 10)},
		{"cpu", "cpu.cfs_quota_us", strconv.FormatInt(l.Quota, 10)},
		{"memory", "memory.limit_in_bytes", strconv.FormatInt(l.Memory, 10)},
	} {
		if err := cgroupfile.Write(filepath.Join(cgroupRoot, f.controller, p), f.file, f.value); err != nil {
			return fmt.Errorf("cgroup %s: %w", p, err)
		}
	}
	return nil
}

func cleanCgroupPath(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("cgroup %q: not a clean absolute path below the root", p)
	}
	return nil
}
