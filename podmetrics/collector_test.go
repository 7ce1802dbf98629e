package podmetrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
)

type fakeSource struct {
	s     Snapshot
	err   error
	calls int
}

func (f *fakeSource) Snapshot(context.Context) (Snapshot, error) {
	f.calls++
	return f.s, f.err
}

func fullSnapshot() Snapshot {
	return Snapshot{
		Namespace: "team-a",
		Pod:       "web",
		Containers: []ContainerStats{
			{
				Name:     "app",
				CPU:      &CPUStats{UsageSeconds: 3.5, UserSeconds: 2, SystemSeconds: 1, Periods: 100, ThrottledPeriods: 7, ThrottledSeconds: 2.5, QuotaMicros: 50000, PeriodMicros: 100000},
				Memory:   &MemoryStats{UsageBytes: 20480, WorkingSetBytes: 19456, RSSBytes: 8192, CacheBytes: 4096, LimitBytes: 268435456, OOMKills: 2},
				Pressure: &PressureStats{CPU: &PSI{1.5, 0.5}, Memory: &PSI{0.25, 0.125}, IO: &PSI{4, 3}},
				Rootfs: &RootfsStats{
					Device:      "/dev/loop3",
					FS:          &FSUsage{UsageBytes: 1 << 20, LimitBytes: 20 << 30, InodesTotal: 1000, InodesFree: 900},
					IO:          &DeviceIO{ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2},
					Limits:      iothrottle.DeviceLimits{ReadBps: 6_000_000, WriteBps: 3_000_000, WriteIOPS: 1000},
					BurstActive: new(bool),
				},
				Stdio: &iothrottle.Stats{RateBytesPerSec: 1_000_000, BytesForwarded: 5000, Waits: 3, WaitTime: 1500 * time.Millisecond},
			},
			{Name: SandboxContainer, CPU: &CPUStats{UsageSeconds: 0.01}},
		},
		Network: []InterfaceStats{{Name: "eth0", RxBytes: 123456, RxPackets: 789, RxErrors: 1, RxDropped: 2, TxBytes: 65432, TxPackets: 321, TxErrors: 3, TxDropped: 4}},
		Logs:    &logfwd.Stats{Files: 2, Lines: 10, Bytes: 300, SplitLines: 1, SinkErrors: 4, LagBytes: 77, Skipped: map[string]uint64{"name_too_long": 1, "symlink": 2}},
	}
}

func TestCollectorExposition(t *testing.T) {
	src := &fakeSource{s: fullSnapshot()}
	// Gatherers checks what a registry would: names, types, sorted and
	// unique label sets.
	reg := prometheus.Gatherers{NewCollector(src, nil)}
	if src.calls != 0 {
		t.Fatalf("creating the collector read the source %d times; it must read only on scrape", src.calls)
	}
	want := `
# HELP container_cpu_usage_seconds_total Cumulative CPU time consumed in seconds.
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="POD",namespace="team-a",pod="web"} 0.01
container_cpu_usage_seconds_total{container="app",namespace="team-a",pod="web"} 3.5
# HELP container_cpu_cfs_throttled_seconds_total Total time duration the container has been throttled.
# TYPE container_cpu_cfs_throttled_seconds_total counter
container_cpu_cfs_throttled_seconds_total{container="POD",namespace="team-a",pod="web"} 0
container_cpu_cfs_throttled_seconds_total{container="app",namespace="team-a",pod="web"} 2.5
# HELP container_memory_working_set_bytes Current working set in bytes.
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="team-a",pod="web"} 19456
# HELP container_spec_memory_limit_bytes Memory limit for the container (0: unlimited).
# TYPE container_spec_memory_limit_bytes gauge
container_spec_memory_limit_bytes{container="app",namespace="team-a",pod="web"} 2.68435456e+08
# HELP container_pressure_io_waiting_seconds_total Total time duration tasks in the container have waited due to IO congestion, the rootfs throttle's included.
# TYPE container_pressure_io_waiting_seconds_total counter
container_pressure_io_waiting_seconds_total{container="app",namespace="team-a",pod="web"} 4
# HELP container_fs_writes_bytes_total Cumulative count of bytes written.
# TYPE container_fs_writes_bytes_total counter
container_fs_writes_bytes_total{container="app",device="/dev/loop3",namespace="team-a",pod="web"} 8192
# HELP container_fs_usage_bytes Number of bytes that are consumed by the container on this filesystem.
# TYPE container_fs_usage_bytes gauge
container_fs_usage_bytes{container="app",device="/dev/loop3",namespace="team-a",pod="web"} 1.048576e+06
# HELP cci_rootfs_throttle_limit_bytes_per_second The rootfs throttle's bandwidth limit (R8); absent when unlimited.
# TYPE cci_rootfs_throttle_limit_bytes_per_second gauge
cci_rootfs_throttle_limit_bytes_per_second{container="app",device="/dev/loop3",direction="read",namespace="team-a",pod="web"} 6e+06
cci_rootfs_throttle_limit_bytes_per_second{container="app",device="/dev/loop3",direction="write",namespace="team-a",pod="web"} 3e+06
# HELP cci_rootfs_throttle_limit_iops The rootfs throttle's operations-per-second limit (R8); absent when unlimited.
# TYPE cci_rootfs_throttle_limit_iops gauge
cci_rootfs_throttle_limit_iops{container="app",device="/dev/loop3",direction="write",namespace="team-a",pod="web"} 1000
# HELP cci_rootfs_throttle_burst_active 1 while the rootfs runs at full speed in its start burst (R8), 0 once the throttle's limits hold; absent without a burst.
# TYPE cci_rootfs_throttle_burst_active gauge
cci_rootfs_throttle_burst_active{container="app",device="/dev/loop3",namespace="team-a",pod="web"} 0
# HELP cci_stdio_throttle_wait_seconds_total Time the stdout throttle (R14) held the container back.
# TYPE cci_stdio_throttle_wait_seconds_total counter
cci_stdio_throttle_wait_seconds_total{container="app",namespace="team-a",pod="web"} 1.5
# HELP container_network_receive_bytes_total Cumulative count of bytes received.
# TYPE container_network_receive_bytes_total counter
container_network_receive_bytes_total{container="",interface="eth0",namespace="team-a",pod="web"} 123456
# HELP container_network_transmit_packets_dropped_total Cumulative count of packets dropped while transmitting.
# TYPE container_network_transmit_packets_dropped_total counter
container_network_transmit_packets_dropped_total{container="",interface="eth0",namespace="team-a",pod="web"} 4
# HELP cci_log_skipped_files_total Files not collected, by reason.
# TYPE cci_log_skipped_files_total counter
cci_log_skipped_files_total{namespace="team-a",pod="web",reason="name_too_long"} 1
cci_log_skipped_files_total{namespace="team-a",pod="web",reason="symlink"} 2
# HELP cci_log_lag_bytes Bytes written but not yet delivered.
# TYPE cci_log_lag_bytes gauge
cci_log_lag_bytes{namespace="team-a",pod="web"} 77
# HELP cci_pod_metrics_scrape_error 1 when part of this scrape's figures could not be read (see the shim's log).
# TYPE cci_pod_metrics_scrape_error gauge
cci_pod_metrics_scrape_error{namespace="team-a",pod="web"} 0
`
	names := []string{
		"container_cpu_usage_seconds_total", "container_cpu_cfs_throttled_seconds_total", "container_memory_working_set_bytes",
		"container_spec_memory_limit_bytes", "container_pressure_io_waiting_seconds_total", "container_fs_writes_bytes_total",
		"container_fs_usage_bytes", "cci_rootfs_throttle_limit_bytes_per_second", "cci_rootfs_throttle_limit_iops",
		"cci_rootfs_throttle_burst_active", "cci_stdio_throttle_wait_seconds_total", "container_network_receive_bytes_total",
		"container_network_transmit_packets_dropped_total", "cci_log_skipped_files_total", "cci_log_lag_bytes", "cci_pod_metrics_scrape_error",
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if src.calls != 1 {
		t.Errorf("one scrape read the source %d times", src.calls)
	}
	// Every metric the collector describes appears in a full snapshot.
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	mfs, _ := reg.Gather()
	if len(mfs) != len(allDescs) {
		var got []string
		for _, mf := range mfs {
			got = append(got, mf.GetName())
		}
		t.Errorf("a full snapshot gives %d metric families (%d series): %v; the collector describes %d", len(mfs), n, got, len(allDescs))
	}
}

// The linter promtool runs (client_golang's promlint) finds nothing.
func TestCollectorLint(t *testing.T) {
	problems, err := testutil.GatherAndLint(NewCollector(&fakeSource{s: fullSnapshot()}, nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// A failing source still gives what it read and flags the scrape.
func TestCollectorPartial(t *testing.T) {
	s := fullSnapshot()
	s.Containers = s.Containers[:1]
	s.Containers[0].Memory = nil
	reg := prometheus.Gatherers{NewCollector(&fakeSource{s: s, err: errors.New("statfs failed")}, nil)}
	want := `
# HELP cci_pod_metrics_scrape_error 1 when part of this scrape's figures could not be read (see the shim's log).
# TYPE cci_pod_metrics_scrape_error gauge
cci_pod_metrics_scrape_error{namespace="team-a",pod="web"} 1
# HELP container_cpu_usage_seconds_total Cumulative CPU time consumed in seconds.
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="team-a",pod="web"} 3.5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cci_pod_metrics_scrape_error", "container_cpu_usage_seconds_total", "container_memory_usage_bytes"); err != nil {
		t.Error(err)
	}
}

// A name that is not UTF-8 (ctr's standalone containers take any id
// containerd accepts) is still a valid exposition.
func TestCollectorInvalidUTF8(t *testing.T) {
	s := fullSnapshot()
	s.Pod = "web\xff"
	reg := prometheus.Gatherers{NewCollector(&fakeSource{s: s}, nil)}
	want := `
# HELP cci_pod_metrics_scrape_error 1 when part of this scrape's figures could not be read (see the shim's log).
# TYPE cci_pod_metrics_scrape_error gauge
cci_pod_metrics_scrape_error{namespace="team-a",pod="web�"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cci_pod_metrics_scrape_error"); err != nil {
		t.Error(err)
	}
}

// Two containers of one name (a restarted one not yet removed) give one
// series each, the first's: Prometheus refuses a scrape's duplicates.
func TestCollectorDuplicateNames(t *testing.T) {
	s := fullSnapshot()
	again := s.Containers[0]
	again.CPU = &CPUStats{UsageSeconds: 99}
	s.Containers = append(s.Containers, again)
	reg := prometheus.Gatherers{NewCollector(&fakeSource{s: s}, nil)}
	want := `
# HELP container_cpu_usage_seconds_total Cumulative CPU time consumed in seconds.
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="POD",namespace="team-a",pod="web"} 0.01
container_cpu_usage_seconds_total{container="app",namespace="team-a",pod="web"} 3.5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "container_cpu_usage_seconds_total"); err != nil {
		t.Error(err)
	}
}

// Every series lists its labels sorted by name, as the exposition format
// and a registry expect, whatever order the family declares them in.
func TestCollectorLabelsSorted(t *testing.T) {
	mfs, _ := NewCollector(&fakeSource{s: fullSnapshot()}, nil).Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for i := 1; i < len(m.GetLabel()); i++ {
				if a, b := m.GetLabel()[i-1].GetName(), m.GetLabel()[i].GetName(); a >= b {
					t.Errorf("%s: label %q before %q", mf.GetName(), a, b)
				}
			}
		}
	}
}
