package iothrottle

import (
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestLimitsFromConfig(t *testing.T) {
	node := DefaultNodeLimits()
	def := Limits{Rootfs: node.Rootfs, RootfsBurst: node.RootfsBurst, StdioBytesPerSec: node.StdioBytesPerSec}
	tests := []struct {
		name    string
		node    NodeLimits
		ann     map[string]string
		want    Limits
		wantErr []string // substrings of the error; nil: no error
	}{
		{name: "defaults", node: node, want: def},
		{name: "unrelated annotations ignored", node: node,
			ann: map[string]string{"io.kubernetes.cri.sandbox-id": "x", "io.katacontainers.config.hypervisor.default_vcpus": "2"}, want: def},
		{name: "raise write bps refused", node: node, ann: map[string]string{AnnotationRootfsWriteBps: "12000000"},
			wantErr: []string{AnnotationRootfsWriteBps, "node-configured", "6000000"}},
		{name: "raise stdio refused", node: node, ann: map[string]string{AnnotationStdioBps: "1000001"},
			wantErr: []string{AnnotationStdioBps, "node-configured"}},
		{name: "disable via zero refused", node: node, ann: map[string]string{AnnotationRootfsReadIOPS: "0"},
			wantErr: []string{AnnotationRootfsReadIOPS, "node-configured"}},
		{name: "malformed refused", node: node, ann: map[string]string{AnnotationRootfsReadBps: "6MB"},
			wantErr: []string{AnnotationRootfsReadBps, "positive integer"}},
		{name: "unknown throttle key refused", node: node, ann: map[string]string{AnnotationPrefix + "rootfs-bps": "1"},
			wantErr: []string{AnnotationPrefix + "rootfs-bps", "unknown", AnnotationRootfsWriteBps}},
		{name: "kata limiter annotation refused", node: node,
			ann:     map[string]string{"io.katacontainers.config.hypervisor.disk_rate_limiter_bw_max_rate": "999999999"},
			wantErr: []string{"disk_rate_limiter_bw_max_rate", "node-configured"}},
		{name: "lowering allowed", node: node,
			ann:  map[string]string{AnnotationRootfsWriteBps: "1000000", AnnotationRootfsWriteIOPS: " 100 ", AnnotationStdioBps: "1000000"},
			want: Limits{Rootfs: DeviceLimits{ReadBps: 6_000_000, WriteBps: 1_000_000, ReadIOPS: 1000, WriteIOPS: 100}, RootfsBurst: node.RootfsBurst, StdioBytesPerSec: 1_000_000}},
		{name: "limit where node has none", node: NodeLimits{}, ann: map[string]string{AnnotationStdioBps: "5000"},
			want: Limits{StdioBytesPerSec: 5000}},
		{name: "stdio out of range", node: NodeLimits{}, ann: map[string]string{AnnotationStdioBps: "18446744073709551615"},
			wantErr: []string{AnnotationStdioBps, "range"}},
		{name: "negative node stdio", node: NodeLimits{StdioBytesPerSec: -1}, wantErr: []string{"node stdio"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LimitsFromConfig(tt.node, tt.ann)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, want an error", got)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func FuzzLimitsFromConfig(f *testing.F) {
	f.Add(AnnotationRootfsWriteBps, "1000")
	f.Add(AnnotationStdioBps, "-1")
	f.Add("io.katacontainers.config.hypervisor.disk_rate_limiter_ops_max_rate", "1")
	f.Add(AnnotationRootfsBurstSeconds, "61")
	f.Add(AnnotationRootfsBurstBytes, "0")
	f.Fuzz(func(t *testing.T, k, v string) {
		node := DefaultNodeLimits()
		got, err := LimitsFromConfig(node, map[string]string{k: v})
		if err != nil {
			return
		}
		// Whatever the annotation, no limit may be raised or removed.
		n := node.Rootfs
		for _, p := range [][2]uint64{{got.Rootfs.ReadBps, n.ReadBps}, {got.Rootfs.WriteBps, n.WriteBps},
			{got.Rootfs.ReadIOPS, n.ReadIOPS}, {got.Rootfs.WriteIOPS, n.WriteIOPS},
			{uint64(got.StdioBytesPerSec), uint64(node.StdioBytesPerSec)}} {
			if p[0] == 0 || p[0] > p[1] {
				t.Fatalf("%q=%q raised a limit: %+v", k, v, got)
			}
		}
		b, nb := got.RootfsBurst, node.RootfsBurst
		if b.Bytes > nb.Bytes || b.Ops > nb.Ops || b.Window > nb.Window {
			t.Fatalf("%q=%q raised the start burst: %+v", k, v, b)
		}
	})
}

func throttle(major, minor int64, rate uint64) specs.LinuxThrottleDevice {
	d := specs.LinuxThrottleDevice{Rate: rate}
	d.Major, d.Minor = major, minor
	return d
}

// normBlockIO treats nil and empty throttle lists alike.
func normBlockIO(b *specs.LinuxBlockIO) [4][]specs.LinuxThrottleDevice {
	out := [4][]specs.LinuxThrottleDevice{b.ThrottleReadBpsDevice, b.ThrottleWriteBpsDevice, b.ThrottleReadIOPSDevice, b.ThrottleWriteIOPSDevice}
	for i := range out {
		if len(out[i]) == 0 {
			out[i] = nil
		}
	}
	return out
}

func TestApplyToSpec(t *testing.T) {
	tests := []struct {
		name string
		in   *specs.Spec
		l    DeviceLimits
		want *specs.LinuxBlockIO
	}{
		{name: "empty spec", in: &specs.Spec{}, l: DefaultNodeLimits().Rootfs,
			want: &specs.LinuxBlockIO{
				ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{throttle(7, 3, 6_000_000)},
				ThrottleWriteBpsDevice:  []specs.LinuxThrottleDevice{throttle(7, 3, 6_000_000)},
				ThrottleReadIOPSDevice:  []specs.LinuxThrottleDevice{throttle(7, 3, 1000)},
				ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{throttle(7, 3, 1000)},
			}},
		{name: "bundle's own higher entry replaced, other devices kept",
			in: &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
				ThrottleWriteBpsDevice: []specs.LinuxThrottleDevice{throttle(7, 3, 1<<40), throttle(8, 0, 5)},
				ThrottleReadIOPSDevice: []specs.LinuxThrottleDevice{throttle(7, 3, 1<<30)},
			}}}},
			l: DeviceLimits{WriteBps: 6_000_000},
			want: &specs.LinuxBlockIO{
				ThrottleWriteBpsDevice: []specs.LinuxThrottleDevice{throttle(8, 0, 5), throttle(7, 3, 6_000_000)},
				ThrottleReadIOPSDevice: []specs.LinuxThrottleDevice{},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ApplyToSpec(tt.in, 7, 3, tt.l)
			got := tt.in.Linux.Resources.BlockIO
			if !reflect.DeepEqual(normBlockIO(got), normBlockIO(tt.want)) {
				t.Fatalf("blockIO = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestKataDiskRateLimiterConfig(t *testing.T) {
	tests := []struct {
		name string
		l    DeviceLimits
		want string
	}{
		{name: "defaults: (6+6) MB/s in bits, 1000+1000 ops", l: DefaultNodeLimits().Rootfs,
			want: "disk_rate_limiter_bw_max_rate = 96000000\ndisk_rate_limiter_ops_max_rate = 2000\n"},
		{name: "unlimited", l: DeviceLimits{}, want: "disk_rate_limiter_bw_max_rate = 0\ndisk_rate_limiter_ops_max_rate = 0\n"},
		{name: "one direction unlimited", l: DeviceLimits{ReadBps: 1, WriteBps: 0, ReadIOPS: 5, WriteIOPS: 7},
			want: "disk_rate_limiter_bw_max_rate = 0\ndisk_rate_limiter_ops_max_rate = 12\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KataDiskRateLimiterConfig(tt.l); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
