package podmetrics

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// unlimited is where a cgroup memory limit means "none": v1 reports
// PAGE_COUNTER_MAX pages in bytes (about 2^63), v2 "max".
const unlimited = 1 << 62

// FromCgroupV1 converts cgroup v1 metrics (containerd/cgroups, also what
// a backend shim's Stats returns on a v1 host) for the container whose rootfs
// is block device dev (nil: none, no DeviceIO).
func FromCgroupV1(m *v1.Metrics, dev *BlockDevice) (*CPUStats, *MemoryStats, *DeviceIO) {
	if m == nil {
		return nil, nil, nil
	}
	var cpu *CPUStats
	if c := m.GetCPU(); c != nil && c.GetUsage() != nil {
		cpu = &CPUStats{
			UsageSeconds:     nanos(c.GetUsage().GetTotal()),
			UserSeconds:      nanos(c.GetUsage().GetUser()),
			SystemSeconds:    nanos(c.GetUsage().GetKernel()),
			Periods:          c.GetThrottling().GetPeriods(),
			ThrottledPeriods: c.GetThrottling().GetThrottledPeriods(),
			ThrottledSeconds: nanos(c.GetThrottling().GetThrottledTime()),
		}
	}
	var mem *MemoryStats
	if mm := m.GetMemory(); mm != nil && mm.GetUsage() != nil {
		mem = &MemoryStats{
			UsageBytes:      mm.GetUsage().GetUsage(),
			WorkingSetBytes: workingSet(mm.GetUsage().GetUsage(), mm.GetTotalInactiveFile()),
			RSSBytes:        mm.GetTotalRSS(),
			CacheBytes:      mm.GetTotalCache(),
			LimitBytes:      limit(mm.GetUsage().GetLimit()),
			OOMKills:        m.GetMemoryOomControl().GetOomKill(),
		}
	}
	var dio *DeviceIO
	if b := m.GetBlkio(); b != nil && dev != nil {
		major, minor := dev.Major, dev.Minor
		dio = &DeviceIO{}
		for _, e := range b.GetIoServiceBytesRecursive() {
			if e.GetMajor() == major && e.GetMinor() == minor {
				addOp(e.GetOp(), e.GetValue(), &dio.ReadBytes, &dio.WriteBytes)
			}
		}
		for _, e := range b.GetIoServicedRecursive() {
			if e.GetMajor() == major && e.GetMinor() == minor {
				addOp(e.GetOp(), e.GetValue(), &dio.Reads, &dio.Writes)
			}
		}
	}
	return cpu, mem, dio
}

// FromCgroupV2 converts cgroup v2 metrics like FromCgroupV1.
func FromCgroupV2(m *v2.Metrics, dev *BlockDevice) (*CPUStats, *MemoryStats, *DeviceIO) {
	if m == nil {
		return nil, nil, nil
	}
	var cpu *CPUStats
	if c := m.GetCPU(); c != nil {
		cpu = &CPUStats{
			UsageSeconds:     micros(c.GetUsageUsec()),
			UserSeconds:      micros(c.GetUserUsec()),
			SystemSeconds:    micros(c.GetSystemUsec()),
			Periods:          c.GetNrPeriods(),
			ThrottledPeriods: c.GetNrThrottled(),
			ThrottledSeconds: micros(c.GetThrottledUsec()),
		}
	}
	var mem *MemoryStats
	if mm := m.GetMemory(); mm != nil {
		mem = &MemoryStats{
			UsageBytes:      mm.GetUsage(),
			WorkingSetBytes: workingSet(mm.GetUsage(), mm.GetInactiveFile()),
			RSSBytes:        mm.GetAnon(),
			CacheBytes:      mm.GetFile(),
			LimitBytes:      limit(mm.GetUsageLimit()),
			OOMKills:        m.GetMemoryEvents().GetOomKill(),
		}
	}
	var dio *DeviceIO
	if io := m.GetIo(); io != nil && dev != nil {
		major, minor := dev.Major, dev.Minor
		dio = &DeviceIO{}
		for _, e := range io.GetUsage() {
			if e.GetMajor() == major && e.GetMinor() == minor {
				dio.ReadBytes += e.GetRbytes()
				dio.WriteBytes += e.GetWbytes()
				dio.Reads += e.GetRios()
				dio.Writes += e.GetWios()
			}
		}
	}
	return cpu, mem, dio
}

// PressureFromCgroupV2 reads the pressure stall times a cgroup v2 Metrics
// carries (a backend's Stats on a v2 host or guest); nil when it has none.
func PressureFromCgroupV2(m *v2.Metrics) *PressureStats {
	conv := func(p *v2.PSIStats) *PSI {
		if p == nil || (p.GetSome() == nil && p.GetFull() == nil) {
			return nil
		}
		return &PSI{SomeSeconds: micros(p.GetSome().GetTotal()), FullSeconds: micros(p.GetFull().GetTotal())}
	}
	ps := &PressureStats{CPU: conv(m.GetCPU().GetPSI()), Memory: conv(m.GetMemory().GetPSI()), IO: conv(m.GetIo().GetPSI())}
	if ps.CPU == nil && ps.Memory == nil && ps.IO == nil {
		return nil
	}
	return ps
}

func nanos(v uint64) float64  { return float64(v) / 1e9 }
func micros(v uint64) float64 { return float64(v) / 1e6 }

// workingSet is cAdvisor's: usage less inactive file pages, never below 0.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}

func limit(v uint64) uint64 {
	if v >= unlimited {
		return 0
	}
	return v
}

func addOp(op string, v uint64, read, write *uint64) {
	switch strings.ToLower(op) {
	case "read":
		*read += v
	case "write":
		*write += v
	}
}

// ParsePSI reads a cgroup v2 pressure file ("some avg10=.. total=<µs>",
// "full ... total=<µs>"). A file without a "full" line (cpu.pressure on
// older kernels) gives FullSeconds 0.
func ParsePSI(r io.Reader) (*PSI, error) {
	var p PSI
	seen := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		var dst *float64
		switch fields[0] {
		case "some":
			dst = &p.SomeSeconds
		case "full":
			dst = &p.FullSeconds
		default:
			return nil, fmt.Errorf("pressure line %q: want some or full", sc.Text())
		}
		found := false
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				us, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("pressure total %q: %w", v, err)
				}
				*dst, found, seen = micros(us), true, true
			}
		}
		if !found {
			return nil, fmt.Errorf("pressure line %q: no total", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !seen {
		return nil, fmt.Errorf("empty pressure file")
	}
	return &p, nil
}
