package iothrottle

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Defaults of SPEC R8 and R14, in bytes (10^6 per MB) and operations per
// second.
const (
	DefaultRootfsBps        = 6_000_000
	DefaultRootfsIOPS       = 1000
	DefaultStdioBytesPerSec = 1_000_000
)

// Pod annotations that may LOWER a node-configured limit. Values are
// decimal integers: bytes per second or operations per second, > 0.
const (
	AnnotationPrefix          = "throttle.cci.io/"
	AnnotationRootfsReadBps   = AnnotationPrefix + "rootfs-read-bps"
	AnnotationRootfsWriteBps  = AnnotationPrefix + "rootfs-write-bps"
	AnnotationRootfsReadIOPS  = AnnotationPrefix + "rootfs-read-iops"
	AnnotationRootfsWriteIOPS = AnnotationPrefix + "rootfs-write-iops"
	AnnotationStdioBps        = AnnotationPrefix + "stdio-bps"

	// kataHypervisorPrefix: Kata's hypervisor annotations; any rate
	// limiter key there would bypass node configuration.
	kataHypervisorPrefix = "io.katacontainers.config.hypervisor."
)

// DeviceLimits are per-device throttles; 0 in a field means unlimited.
type DeviceLimits struct {
	ReadBps   uint64 `json:"read_bps"` // bytes per second
	WriteBps  uint64 `json:"write_bps"`
	ReadIOPS  uint64 `json:"read_iops"` // operations per second
	WriteIOPS uint64 `json:"write_iops"`
}

// IsZero reports whether no limit is set.
func (l DeviceLimits) IsZero() bool { return l == DeviceLimits{} }

// NodeLimits is the node configuration of the throttles; 0 means off.
type NodeLimits struct {
	Rootfs DeviceLimits
	// RootfsBurst is each rootfs device's start burst (off when a field
	// is 0).
	RootfsBurst StartBurst
	// StdioBytesPerSec is the per-container stdout+stderr budget.
	StdioBytesPerSec int64
}

// DefaultNodeLimits returns SPEC R8 and R14's defaults, with the default
// start burst.
func DefaultNodeLimits() NodeLimits {
	return NodeLimits{
		Rootfs: DeviceLimits{
			ReadBps: DefaultRootfsBps, WriteBps: DefaultRootfsBps,
			ReadIOPS: DefaultRootfsIOPS, WriteIOPS: DefaultRootfsIOPS,
		},
		RootfsBurst:      DefaultStartBurst(),
		StdioBytesPerSec: DefaultStdioBytesPerSec,
	}
}

// Limits are the effective limits of one pod; 0 means off.
type Limits struct {
	Rootfs DeviceLimits
	// RootfsBurst is the rootfs device's start burst; Enabled() false
	// means R8's limits from the first byte.
	RootfsBurst      StartBurst
	StdioBytesPerSec int64
}

// LimitsFromConfig returns the pod's limits. Limits are node-configured: a
// pod annotation may only lower one (a smaller positive value, or any
// positive value where the node sets none; for the start burst, any value
// from 0, which turns it off, to the node's). An annotation that would raise
// or remove a limit, an unknown key under AnnotationPrefix, a malformed
// value, and any Kata hypervisor rate-limiter annotation are refused with an
// error naming the annotation.
func LimitsFromConfig(node NodeLimits, podAnnotations map[string]string) (Limits, error) {
	if node.StdioBytesPerSec < 0 {
		return Limits{}, fmt.Errorf("node stdio limit %d: must be >= 0", node.StdioBytesPerSec)
	}
	if err := node.RootfsBurst.validate(); err != nil {
		return Limits{}, err
	}
	l := Limits{Rootfs: node.Rootfs, RootfsBurst: node.RootfsBurst, StdioBytesPerSec: node.StdioBytesPerSec}
	if !l.RootfsBurst.Enabled() {
		l.RootfsBurst = StartBurst{}
	}
	stdio := uint64(node.StdioBytesPerSec)
	fields := map[string]*uint64{
		AnnotationRootfsReadBps:   &l.Rootfs.ReadBps,
		AnnotationRootfsWriteBps:  &l.Rootfs.WriteBps,
		AnnotationRootfsReadIOPS:  &l.Rootfs.ReadIOPS,
		AnnotationRootfsWriteIOPS: &l.Rootfs.WriteIOPS,
		AnnotationStdioBps:        &stdio,
	}
	// Sorted keys: the first error is deterministic.
	keys := make([]string, 0, len(podAnnotations))
	for k := range podAnnotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := podAnnotations[k]
		if strings.HasPrefix(k, kataHypervisorPrefix) && strings.Contains(k, "rate_limiter") {
			return Limits{}, fmt.Errorf("annotation %q: I/O rate limits are node-configured and cannot be set by a pod", k)
		}
		if !strings.HasPrefix(k, AnnotationPrefix) {
			continue
		}
		if isBurstAnnotation(k) {
			if err := lowerBurst(&l.RootfsBurst, node.RootfsBurst, k, v); err != nil {
				return Limits{}, err
			}
			continue
		}
		dst, ok := fields[k]
		if !ok {
			return Limits{}, fmt.Errorf("annotation %q: unknown throttle annotation; allowed (to lower node-configured limits only): %s",
				k, strings.Join(annotationKeys(), ", "))
		}
		want, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil || want == 0 {
			return Limits{}, fmt.Errorf("annotation %q=%q: want a positive integer per second; limits are node-configured and may only be lowered", k, v)
		}
		if cur := *dst; cur != 0 && want > cur {
			return Limits{}, fmt.Errorf("annotation %q=%q: exceeds the node limit %d; limits are node-configured and may only be lowered", k, v, cur)
		}
		*dst = want
	}
	if stdio > uint64(1<<63-1) {
		return Limits{}, fmt.Errorf("annotation %q: value out of range", AnnotationStdioBps)
	}
	l.StdioBytesPerSec = int64(stdio)
	if !l.RootfsBurst.Enabled() {
		l.RootfsBurst = StartBurst{} // one spelling of "off"
	}
	return l, nil
}

func annotationKeys() []string {
	return []string{AnnotationRootfsReadBps, AnnotationRootfsWriteBps,
		AnnotationRootfsReadIOPS, AnnotationRootfsWriteIOPS, AnnotationStdioBps,
		AnnotationRootfsBurstBytes, AnnotationRootfsBurstOps, AnnotationRootfsBurstSeconds}
}

// ApplyToSpec sets the throttles of l for device major:minor in spec's
// linux.resources.blockIO, replacing any entry the spec had for that device
// (so a bundle cannot carry its own, higher value). runc then applies them to
// the container's cgroup (v1 blkio or v2 io.max). Fields of l that are 0 are
// left unthrottled. Entries for other devices are kept.
func ApplyToSpec(spec *specs.Spec, major, minor int64, l DeviceLimits) {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	if spec.Linux.Resources.BlockIO == nil {
		spec.Linux.Resources.BlockIO = &specs.LinuxBlockIO{}
	}
	b := spec.Linux.Resources.BlockIO
	set := func(list []specs.LinuxThrottleDevice, rate uint64) []specs.LinuxThrottleDevice {
		list = slices.DeleteFunc(list, func(d specs.LinuxThrottleDevice) bool {
			return d.Major == major && d.Minor == minor
		})
		if rate == 0 {
			return list
		}
		td := specs.LinuxThrottleDevice{Rate: rate}
		td.Major, td.Minor = major, minor
		return append(list, td)
	}
	b.ThrottleReadBpsDevice = set(b.ThrottleReadBpsDevice, l.ReadBps)
	b.ThrottleWriteBpsDevice = set(b.ThrottleWriteBpsDevice, l.WriteBps)
	b.ThrottleReadIOPSDevice = set(b.ThrottleReadIOPSDevice, l.ReadIOPS)
	b.ThrottleWriteIOPSDevice = set(b.ThrottleWriteIOPSDevice, l.WriteIOPS)
}

// KataDiskRateLimiterConfig renders the [hypervisor.clh] lines of Kata's
// configuration.toml for l. Cloud Hypervisor has one bandwidth bucket and
// one ops bucket per disk, shared by reads and writes, so the rendered
// limits are read+write: the VM-side limiter never throttles a workload the
// per-direction rule allows, and the host cgroup throttle (ApplyToCgroup on
// the sandbox cgroup) enforces each direction exactly. Bandwidth is in
// bits/s (bytes*8). A direction that is unlimited makes the sum unlimited,
// which Kata spells 0. QEMU ignores these keys.
func KataDiskRateLimiterConfig(l DeviceLimits) string {
	sum := func(a, b uint64) uint64 {
		if a == 0 || b == 0 || a > math.MaxInt64/16 || b > math.MaxInt64/16 {
			return 0 // unlimited, or beyond what Kata's int64 could carry
		}
		return a + b
	}
	return fmt.Sprintf("disk_rate_limiter_bw_max_rate = %d\ndisk_rate_limiter_ops_max_rate = %d\n",
		sum(l.ReadBps, l.WriteBps)*8, sum(l.ReadIOPS, l.WriteIOPS))
}
