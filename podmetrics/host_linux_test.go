package podmetrics

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
)

// writeTree writes files (path relative to root → content).
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	fixtureGroup = "/k8s.io/abc"
	cpuPressure  = "some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n"
	memPressure  = "some avg10=0.00 avg60=0.00 avg300=0.00 total=250000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=125000\n"
	ioPressure   = "some avg10=1.00 avg60=2.00 avg300=3.00 total=4000000\nfull avg10=0.50 avg60=1.00 avg300=1.50 total=3000000\n"
)

// procFixture is a /proc with the partitions blkio names devices from, and
// a thread-self/net/dev.
func procFixture(t *testing.T) string {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"partitions": "major minor  #blocks  name\n\n   7        3   20971520 loop3\n 254        0   10485760 vda\n",
		"thread-self/net/dev": `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:  123456     789    1    2    0     0          0         0    65432     321    3    4    0     0       0          0
`,
	})
	return root
}

// v1Fixture is a hybrid host: v1 controllers, the unified hierarchy beside
// them holding only pressure files.
func v1Fixture(t *testing.T, dev string) string {
	root := t.TempDir()
	g := fixtureGroup
	writeTree(t, root, map[string]string{
		"cpu" + g + "/cpu.stat":                          "nr_periods 100\nnr_throttled 7\nthrottled_time 2500000000\nnr_bursts 0\nburst_time 0\n",
		"cpu" + g + "/cpu.cfs_quota_us":                  "50000\n",
		"cpu" + g + "/cpu.cfs_period_us":                 "100000\n",
		"cpuacct" + g + "/cpuacct.usage":                 "3500000000\n",
		"cpuacct" + g + "/cpuacct.stat":                  "user 200\nsystem 100\n",
		"cpuacct" + g + "/cpuacct.usage_percpu":          "1750000000 1750000000 \n",
		"memory" + g + "/memory.stat":                    "cache 4096\nrss 8192\ninactive_file 1024\ntotal_cache 4096\ntotal_rss 8192\ntotal_inactive_file 1024\ntotal_active_file 3072\n",
		"memory" + g + "/memory.usage_in_bytes":          "20480\n",
		"memory" + g + "/memory.max_usage_in_bytes":      "40960\n",
		"memory" + g + "/memory.limit_in_bytes":          "268435456\n",
		"memory" + g + "/memory.failcnt":                 "0\n",
		"memory" + g + "/memory.oom_control":             "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"blkio" + g + "/blkio.throttle.io_service_bytes": dev + " Read 4096\n" + dev + " Write 8192\n" + dev + " Sync 0\n" + dev + " Async 12288\n" + dev + " Discard 0\n" + dev + " Total 12288\n253:7 Read 999\nTotal 13287\n",
		"blkio" + g + "/blkio.throttle.io_serviced":      dev + " Read 1\n" + dev + " Write 2\n" + dev + " Sync 0\n" + dev + " Async 3\n" + dev + " Discard 0\n" + dev + " Total 3\nTotal 3\n",
		"unified/cgroup.controllers":                     "\n",
		"unified" + g + "/cpu.pressure":                  cpuPressure,
		"unified" + g + "/memory.pressure":               memPressure,
		"unified" + g + "/io.pressure":                   ioPressure,
	})
	return root
}

func v2Fixture(t *testing.T, dev string) string {
	root := t.TempDir()
	g := fixtureGroup
	writeTree(t, root, map[string]string{
		"cgroup.controllers":      "cpu memory io pids\n",
		g + "/cgroup.controllers": "cpu memory io pids\n",
		g + "/cpu.stat":           "usage_usec 3500000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 100\nnr_throttled 7\nthrottled_usec 2500000\n",
		g + "/cpu.max":            "50000 100000\n",
		g + "/memory.current":     "20480\n",
		g + "/memory.max":         "268435456\n",
		g + "/memory.stat":        "anon 8192\nfile 4096\ninactive_file 1024\nactive_file 3072\n",
		g + "/memory.events":      "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n",
		g + "/io.stat":            dev + " rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n253:7 rbytes=999 wbytes=0 rios=9 wios=0 dbytes=0 dios=0\n",
		g + "/cpu.pressure":       cpuPressure,
		g + "/memory.pressure":    memPressure,
		g + "/io.pressure":        ioPressure,
	})
	return root
}

func TestHostSourceFixtures(t *testing.T) {
	rootfs := t.TempDir() // statfs needs a real filesystem
	var st unix.Stat_t
	if err := unix.Stat(rootfs, &st); err != nil {
		t.Fatal(err)
	}
	rootDev := &BlockDevice{Path: "/dev/loop3", Major: uint64(unix.Major(st.Dev)), Minor: uint64(unix.Minor(st.Dev))}
	devName := fmt.Sprintf("%d:%d", rootDev.Major, rootDev.Minor)
	stdio := &iothrottle.Stats{RateBytesPerSec: 1_000_000, BytesForwarded: 5000, Waits: 3, WaitTime: 1500 * time.Millisecond}
	logs := &logfwd.Stats{Files: 2, Lines: 10, Bytes: 300, Skipped: map[string]uint64{"name_too_long": 1}}
	limits := iothrottle.DeviceLimits{ReadBps: 6_000_000, WriteBps: 6_000_000, ReadIOPS: 1000, WriteIOPS: 1000}
	wantCPU := &CPUStats{UsageSeconds: 3.5, UserSeconds: 2, SystemSeconds: 1, Periods: 100, ThrottledPeriods: 7, ThrottledSeconds: 2.5, QuotaMicros: 50000, PeriodMicros: 100000}
	wantMem := &MemoryStats{UsageBytes: 20480, WorkingSetBytes: 19456, RSSBytes: 8192, CacheBytes: 4096, LimitBytes: 268435456, OOMKills: 2}
	wantPSI := &PressureStats{CPU: &PSI{1.5, 0.5}, Memory: &PSI{0.25, 0.125}, IO: &PSI{4, 3}}
	wantIO := &DeviceIO{ReadBytes: 4096, WriteBytes: 8192, Reads: 1, Writes: 2}
	wantNet := []InterfaceStats{{Name: "eth0", RxBytes: 123456, RxPackets: 789, RxErrors: 1, RxDropped: 2, TxBytes: 65432, TxPackets: 321, TxErrors: 3, TxDropped: 4}}

	for _, tc := range []struct {
		name string
		root string
	}{{"cgroup v1 hybrid", v1Fixture(t, devName)}, {"cgroup v2", v2Fixture(t, devName)}} {
		t.Run(tc.name, func(t *testing.T) {
			proc := procFixture(t)
			h := &HostSource{
				CgroupRoot: tc.root,
				ProcRoot:   proc,
				Pod: func() Pod {
					return Pod{Namespace: "team-a", Name: "web", Logs: logs, Containers: []Container{
						{Name: "app", CgroupsPath: fixtureGroup, RootfsDir: rootfs, Device: rootDev, Limits: limits, Stdio: stdio,
							Burst: &iothrottle.BurstStatus{Active: true}},
						// Exited: its cgroup is gone, its stdout counters stay.
						{Name: "gone", CgroupsPath: "/k8s.io/exited", Stdio: stdio},
						// A restarted container: the exited attempt first, the running one wins.
						{Name: "restarted", CgroupsPath: "/k8s.io/exited"},
						{Name: "restarted", CgroupsPath: fixtureGroup},
						// Nothing of loop3 is mounted at its rootfs dir: no FS figures, no error.
						{Name: "unmounted", CgroupsPath: fixtureGroup, RootfsDir: rootfs, Device: &BlockDevice{Path: "/dev/loop3", Major: 7, Minor: 3}},
						{Name: "app", CgroupsPath: fixtureGroup}, // a second "app": the first wins
					}}
				},
				netDev: func() ([]InterfaceStats, error) { return readNetDev(filepath.Join(proc, "thread-self")) },
			}
			s, err := h.Snapshot(context.Background())
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			if s.Namespace != "team-a" || s.Pod != "web" || s.Logs != logs || len(s.Containers) != 4 {
				t.Fatalf("snapshot = %+v", s)
			}
			if g := s.Containers[1]; g.Name != "gone" || g.CPU != nil || g.Memory != nil || g.Stdio != stdio {
				t.Errorf("exited container = %+v", g)
			}
			if r := s.Containers[2]; r.Name != "restarted" || !reflect.DeepEqual(r.CPU, wantCPU) {
				t.Errorf("restarted container = %+v; want the running attempt's figures", r)
			}
			if u := s.Containers[3]; u.Name != "unmounted" || u.Rootfs == nil || u.Rootfs.FS != nil || !reflect.DeepEqual(u.Rootfs.IO, &DeviceIO{}) {
				t.Errorf("unmounted rootfs = %+v", u.Rootfs)
			}
			c := s.Containers[0]
			if !reflect.DeepEqual(c.CPU, wantCPU) {
				t.Errorf("CPU = %+v; want %+v", c.CPU, wantCPU)
			}
			if !reflect.DeepEqual(c.Memory, wantMem) {
				t.Errorf("Memory = %+v; want %+v", c.Memory, wantMem)
			}
			if !reflect.DeepEqual(c.Pressure, wantPSI) {
				t.Errorf("Pressure = %+v; want %+v", c.Pressure, wantPSI)
			}
			if c.Rootfs == nil || !reflect.DeepEqual(c.Rootfs.IO, wantIO) || c.Rootfs.Limits != limits || c.Rootfs.Device != "/dev/loop3" {
				t.Errorf("Rootfs = %+v; want IO %+v", c.Rootfs, wantIO)
			} else if fs := c.Rootfs.FS; fs == nil || fs.LimitBytes == 0 || fs.UsageBytes > fs.LimitBytes || fs.InodesFree > fs.InodesTotal {
				t.Errorf("Rootfs.FS = %+v", fs)
			}
			if b := c.Rootfs.BurstActive; b == nil || !*b {
				t.Errorf("burst active = %v; want true", b)
			}
			if c.Stdio != stdio {
				t.Errorf("Stdio = %+v", c.Stdio)
			}
			if !reflect.DeepEqual(s.Network, wantNet) {
				t.Errorf("Network = %+v; want %+v", s.Network, wantNet)
			}
		})
	}
}

// An unlimited memory limit is reported as 0, as cAdvisor does.
func TestHostSourceUnlimitedMemory(t *testing.T) {
	for _, tc := range []struct{ name, root, file, value string }{
		{"v1", v1Fixture(t, "7:3"), "memory" + fixtureGroup + "/memory.limit_in_bytes", "9223372036854771712\n"},
		{"v2", v2Fixture(t, "7:3"), fixtureGroup + "/memory.max", "max\n"},
	} {
		writeTree(t, tc.root, map[string]string{tc.file: tc.value})
		h := &HostSource{CgroupRoot: tc.root, ProcRoot: procFixture(t), Pod: func() Pod {
			return Pod{Containers: []Container{{Name: "app", CgroupsPath: fixtureGroup}}}
		}}
		s, err := h.Snapshot(context.Background())
		if err != nil || len(s.Containers) != 1 || s.Containers[0].Memory == nil {
			t.Fatalf("%s: %+v, %v", tc.name, s, err)
		}
		if l := s.Containers[0].Memory.LimitBytes; l != 0 {
			t.Errorf("%s: limit %d; want 0 (unlimited)", tc.name, l)
		}
	}
}

// Read failures are reported, and everything readable is still there.
func TestHostSourcePartialFailure(t *testing.T) {
	root := v1Fixture(t, "7:3")
	h := &HostSource{CgroupRoot: root, ProcRoot: procFixture(t), Pod: func() Pod {
		return Pod{Containers: []Container{
			{Name: "app", CgroupsPath: fixtureGroup, RootfsDir: "/nonexistent/rootfs", Device: &BlockDevice{Path: "/dev/loop3", Major: 7, Minor: 3}},
			{Name: "climber", CgroupsPath: "/k8s.io/../../etc"},
		}}
	}}
	s, err := h.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), "rootfs: no such file") || !strings.Contains(err.Error(), "not clean") {
		t.Fatalf("error = %v; want the statfs and the cgroups path failures", err)
	}
	if len(s.Containers) != 2 || s.Containers[0].CPU == nil || s.Containers[0].Rootfs == nil || s.Containers[0].Rootfs.FS != nil {
		t.Fatalf("snapshot = %+v", s)
	}
	if c := s.Containers[1]; c.CPU != nil || c.Memory != nil {
		t.Errorf("figures read through a path with ..: %+v", c)
	}
}

func TestCgroupGroup(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/k8s.io/abc", "/k8s.io/abc"},
		{"/kubepods/burstable/pod123/abc", "/kubepods/burstable/pod123/abc"},
		{"kubepods-burstable-pod123.slice:cri-containerd:abc", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice/cri-containerd-abc.scope"},
		{"system.slice:docker:abc", "/system.slice/docker-abc.scope"},
		{":cri:abc", "/system.slice/cri-abc.scope"},
		{"-.slice:cri:abc", "/cri-abc.scope"},
		{"a.slice::b.slice", "/a.slice/b.slice"},
		{"", ""},
		{"relative/path", ""},
		{"/a/../b", ""},
		{"/a/..", ""},
		{"/a//b", ""},
		{"a-.slice:p:n", ""},
		{"a--b.slice:p:n", ""},
		{"x.slice:p:n/../../y", ""},
		{"notaslice:p:n", ""},
		{"a:b", ""},
	} {
		got, err := CgroupGroup(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("CgroupGroup(%q) = %q; want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CgroupGroup(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParsePSI(t *testing.T) {
	p, err := ParsePSI(strings.NewReader("some avg10=0.00 avg60=0.00 avg300=0.00 total=2000000\n"))
	if err != nil || p.SomeSeconds != 2 || p.FullSeconds != 0 {
		t.Errorf("some only: %+v, %v", p, err)
	}
	for _, bad := range []string{"", "partial avg10=0 total=1\n", "some avg10=0\n", "some total=x\n"} {
		if p, err := ParsePSI(strings.NewReader(bad)); err == nil {
			t.Errorf("ParsePSI(%q) = %+v; want an error", bad, p)
		}
	}
}

// Where the containers' cgroups are not the host's, the backend's Stats
// (cgroup v1 or v2 metrics, as kubelet gets them) give CPU, memory and I/O.
func TestHostSourceBackendStats(t *testing.T) {
	dev := &BlockDevice{Path: "/dev/vdb", Major: 254, Minor: 16}
	stats := map[string]any{
		"v1": &v1.Metrics{
			CPU:    &v1.CPUStat{Usage: &v1.CPUUsage{Total: 2_000_000_000, User: 1_500_000_000, Kernel: 500_000_000}, Throttling: &v1.Throttle{Periods: 10, ThrottledPeriods: 1, ThrottledTime: 1_000_000}},
			Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 8192, Limit: 1 << 30}, TotalInactiveFile: 1024, TotalRSS: 4096, TotalCache: 2048},
			Blkio:  &v1.BlkIOStat{IoServiceBytesRecursive: []*v1.BlkIOEntry{{Op: "Read", Major: 254, Minor: 16, Value: 100}, {Op: "Write", Major: 254, Minor: 16, Value: 200}, {Op: "Write", Major: 8, Minor: 0, Value: 999}}},
		},
		"v2": &v2.Metrics{
			CPU:    &v2.CPUStat{UsageUsec: 2_000_000, UserUsec: 1_500_000, SystemUsec: 500_000, NrPeriods: 10, NrThrottled: 1, ThrottledUsec: 1000},
			Memory: &v2.MemoryStat{Usage: 8192, UsageLimit: 1 << 30, InactiveFile: 1024, Anon: 4096, File: 2048},
			Io: &v2.IOStat{Usage: []*v2.IOEntry{{Major: 254, Minor: 16, Rbytes: 100, Wbytes: 200}, {Major: 8, Minor: 0, Wbytes: 999}},
				PSI: &v2.PSIStats{Some: &v2.PSIData{Total: 4_000_000}, Full: &v2.PSIData{Total: 3_000_000}}},
		},
		"broken": "not metrics",
	}
	var asked []string
	h := &HostSource{
		Pod: func() Pod {
			return Pod{Containers: []Container{{ID: "v1", Name: "a", Device: dev}, {ID: "v2", Name: "b", Device: dev}, {ID: "broken", Name: "c"}}}
		},
		BackendStats: func(_ context.Context, id string) (any, error) {
			asked = append(asked, id)
			return stats[id], nil
		},
	}
	s, err := h.Snapshot(context.Background())
	if err == nil || !strings.Contains(err.Error(), `container "c": backend stats of type string`) {
		t.Errorf("error = %v; want the bad stats type named", err)
	}
	if !reflect.DeepEqual(asked, []string{"v1", "v2", "broken"}) {
		t.Errorf("asked the backend for %v", asked)
	}
	wantCPU := &CPUStats{UsageSeconds: 2, UserSeconds: 1.5, SystemSeconds: 0.5, Periods: 10, ThrottledPeriods: 1, ThrottledSeconds: 0.001}
	wantMem := &MemoryStats{UsageBytes: 8192, WorkingSetBytes: 7168, RSSBytes: 4096, CacheBytes: 2048, LimitBytes: 1 << 30}
	for _, c := range s.Containers[:2] {
		if !reflect.DeepEqual(c.CPU, wantCPU) || !reflect.DeepEqual(c.Memory, wantMem) {
			t.Errorf("%s: CPU %+v, memory %+v", c.Name, c.CPU, c.Memory)
		}
		if c.Rootfs == nil || c.Rootfs.FS != nil || c.Rootfs.IO == nil || c.Rootfs.IO.ReadBytes != 100 || c.Rootfs.IO.WriteBytes != 200 {
			t.Errorf("%s: rootfs %+v", c.Name, c.Rootfs)
		}
	}
	// v2 carries pressure (v1 has none).
	if p := s.Containers[1].Pressure; p == nil || p.IO == nil || *p.IO != (PSI{4, 3}) || p.CPU != nil {
		t.Errorf("v2 pressure = %+v", p)
	}
	if s.Containers[0].Pressure != nil {
		t.Errorf("v1 pressure = %+v", s.Containers[0].Pressure)
	}
}
