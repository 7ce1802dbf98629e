package podmetrics

import (
	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
)

// SandboxContainer is the container label of the pod sandbox's own figures
// (the pause container, or the whole sandbox where the backend accounts the
// pod as one), as kubelet's cAdvisor labelled it.
const SandboxContainer = "POD"

// Snapshot is one scrape's figures of one pod. A nil pointer or an empty
// slice is a figure the source could not read: its metrics are left out,
// never reported as zero.
type Snapshot struct {
	Namespace  string
	Pod        string
	Containers []ContainerStats
	Network    []InterfaceStats // the pod's network namespace, per interface
	Logs       *logfwd.Stats    // the pod's file-log collector (R15-R20)
}

// ContainerStats are one container's figures.
type ContainerStats struct {
	Name     string // the container label
	CPU      *CPUStats
	Memory   *MemoryStats
	Pressure *PressureStats
	Rootfs   *RootfsStats
	Stdio    *iothrottle.Stats // the stdout+stderr throttle (R14); nil when off
}

// CPUStats are a container's CPU time and CFS throttling.
type CPUStats struct {
	UsageSeconds     float64
	UserSeconds      float64
	SystemSeconds    float64
	Periods          uint64  // CFS enforcement periods elapsed
	ThrottledPeriods uint64  // periods in which the quota ran out
	ThrottledSeconds float64 // time the container's threads were held back
	// QuotaMicros and PeriodMicros are the CFS quota per period in
	// microseconds; QuotaMicros < 0 when there is no quota. Both 0 when
	// unknown.
	QuotaMicros  int64
	PeriodMicros uint64
}

// MemoryStats are a container's memory figures, as cAdvisor defines them.
type MemoryStats struct {
	UsageBytes      uint64 // all memory charged, page cache included
	WorkingSetBytes uint64 // usage less inactive file pages: what the OOM killer weighs
	RSSBytes        uint64 // anonymous memory
	CacheBytes      uint64 // page cache
	LimitBytes      uint64 // 0 when unlimited
	OOMKills        uint64
}

// PressureStats are the container's pressure stall times (PSI), in seconds:
// Some is time at least one task waited, Full time all tasks did. I/O stall
// time includes the time the rootfs throttle (R8) held I/O back.
type PressureStats struct {
	CPU    *PSI
	Memory *PSI
	IO     *PSI
}

// PSI is one resource's stall time.
type PSI struct {
	SomeSeconds float64
	FullSeconds float64
}

// RootfsStats are a container's root filesystem: the pod's own block device
// (R7) and its throttle (R8).
type RootfsStats struct {
	Device string                  // e.g. /dev/loop3
	FS     *FSUsage                // nil when the filesystem is not mounted on this host (a VM's)
	IO     *DeviceIO               // nil when unknown
	Limits iothrottle.DeviceLimits // the throttle; zero fields are unlimited
	// BurstActive is set when the throttle has a start burst: true while
	// the device still runs at full speed, false once the limits hold.
	BurstActive *bool
}

// FSUsage is a filesystem's space and inodes.
type FSUsage struct {
	UsageBytes  uint64
	LimitBytes  uint64
	InodesTotal uint64
	InodesFree  uint64
}

// DeviceIO counts the container's I/O on one block device.
type DeviceIO struct {
	ReadBytes  uint64
	WriteBytes uint64
	Reads      uint64
	Writes     uint64
}

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name      string
	RxBytes   uint64
	RxPackets uint64
	RxErrors  uint64
	RxDropped uint64
	TxBytes   uint64
	TxPackets uint64
	TxErrors  uint64
	TxDropped uint64
}

// BlockDevice names a block device.
type BlockDevice struct {
	Path         string // /dev/loop3
	Major, Minor uint64
}
