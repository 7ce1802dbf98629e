//go:build linux

package bench

import (
	"crypto/sha256"
	"encoding/xml"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/iothrottle"
)

func TestMedianPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	if got := Median(xs); got != 5.5 {
		t.Errorf("Median = %v, want 5.5", got)
	}
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("Median = %v, want 2", got)
	}
	for p, want := range map[float64]float64{90: 9, 50: 5, 100: 10, 0: 1, 91: 10} {
		if got := Percentile(xs, p); got != want {
			t.Errorf("Percentile(%v) = %v, want %v", p, got, want)
		}
	}
	if Median(nil) != 0 || Percentile(nil, 90) != 0 {
		t.Error("empty input: want 0")
	}
	if !Within(1019000, 1e6, 0.02) || Within(1021000, 1e6, 0.02) || Within(1, 0, 0.5) {
		t.Error("Within")
	}
}

func TestReceiverRate(t *testing.T) {
	r := &receiver{h: sha256.New()}
	t0 := time.Unix(1000, 0)
	// 20 kB at once, then 10 kB every 10 ms for 2 s: 1 MB/s after the first write.
	feed := func(at time.Time, n int) {
		r.n += int64(n)
		if r.firstN == 0 {
			r.first, r.firstN = at, int64(n)
		}
		r.last = at
		r.samples = append(r.samples, sample{at, r.n})
	}
	feed(t0, 20000)
	for i := 1; i <= 200; i++ {
		feed(t0.Add(time.Duration(i)*10*time.Millisecond), 10000)
	}
	if got := r.rate(); got < 999_999 || got > 1_000_001 {
		t.Errorf("rate = %v, want 1e6", got)
	}
	if got := r.peakWindow(time.Second); got != 1_000_000 {
		t.Errorf("peakWindow = %v, want 1e6 (the first write opens a window, it is not in it)", got)
	}
}

func TestRootDevice(t *testing.T) {
	mi := "1620 1519 7:5 / / rw,relatime - ext4 /dev/loop5 rw\n1621 1620 0:63 / /proc rw - proc proc rw\n"
	maj, minor, src, err := rootDevice(mi)
	if err != nil || maj != 7 || minor != 5 || src != "/dev/loop5" {
		t.Errorf("rootDevice = %d:%d %q %v", maj, minor, src, err)
	}
	if _, _, _, err := rootDevice("1621 1620 0:63 / /proc rw - proc proc rw\n"); err == nil {
		t.Error("no root mount: want an error")
	}
}

func TestDDArgs(t *testing.T) {
	for _, c := range []struct {
		p    IOPhase
		want string
	}{
		{IOPhase{Path: "/f", Op: "write", Direct: true, Block: 1 << 20, Ops: 64}, "dd if=/dev/zero of=/f bs=1M count=64 conv=notrunc oflag=direct"},
		{IOPhase{Path: "/f", Op: "read", Direct: true, Block: 4096, Ops: 10}, "dd if=/f of=/dev/null bs=4k count=10 iflag=direct"},
		{IOPhase{Path: "/f", Op: "write", Fsync: true, Block: 1 << 20, Ops: 2}, "dd if=/dev/zero of=/f bs=1M count=2 conv=notrunc,fsync"},
		{IOPhase{Path: "/f", Op: "write", Sync: true, Block: 512, Ops: 2}, "dd if=/dev/zero of=/f bs=512 count=2 conv=notrunc && sync"},
	} {
		if got := ddArgs(c.p); got != c.want {
			t.Errorf("ddArgs = %q, want %q", got, c.want)
		}
	}
}

func TestNodeConfigParses(t *testing.T) {
	for _, th := range []Throttle{Off, Defaults(), NoBurst(Defaults()), {Throttle: config.Throttle{StdioBps: 123, RootfsReadIOPS: 7}}} {
		toml := strings.NewReplacer("{{StateDir}}", "/s", "{{Dir}}", "/d").Replace(nodeConfig("", th))
		cfg := config.Default()
		if err := config.Parse([]byte(toml), &cfg); err != nil {
			t.Fatalf("Parse: %v\n%s", err, toml)
		}
		if cfg.Throttle != th.Throttle {
			t.Errorf("throttle %+v, want %+v", cfg.Throttle, th.Throttle)
		}
	}
	if nb := NoBurst(Defaults()); nb.NodeLimits().RootfsBurst.Enabled() || !Defaults().NodeLimits().RootfsBurst.Enabled() {
		t.Errorf("NoBurst(Defaults()) = %+v: want the burst off, and on by default", nb)
	}
}

func TestReportAndCharts(t *testing.T) {
	r := &Results{Command: "all", Host: Host{CPUs: 2, LoadAfter: "0.1 0.1 0.1"},
		Stdout: &StdoutResult{MB: 30, Repeat: 10, CCIMedianBps: 9.6e8, RuncMedianBps: 1e9, Ratio: 0.96, RatioMin: 0.8, RatioMax: 1,
			Unthrottled: []StreamRun{{Runtime: CCI, Bytes: 1, Want: 1, SHA256OK: true}, {Runtime: Runc, Bytes: 1, Want: 1, SHA256OK: true}},
			Throttled:   &StreamRun{Runtime: CCI, StdioBps: 1e6, Bytes: 30e6, Want: 30e6, SHA256OK: true, ForwardedBps: 1.01e6, ContainerBps: 1.04e6, ShimPeakRSS: 20 << 20}},
		Rootfs: &RootfsResult{Device: "7:5 (/dev/loop5)", WriteBps: 6.2e6, ReadBps: 5.6e6, WriteIOPS: 1000, ReadIOPS: 1000, VolumeWriteBps: 1e9, VolumeSpeedup: 161,
			Phases: []IOPhase{{Name: PhaseBuffered, Bps: 3e9, Device: new(iothrottle.DeviceIOStats)}}},
		Start: &StartResult{N: 2, Series: []StartSeries{{Name: StartRunc, Runtime: Runc, Seconds: []float64{0.1, 0.2}, Median: 0.15, P90: 0.2},
			{Name: StartCCIOff, Runtime: CCI, Seconds: []float64{0.2, 0.3}, Median: 0.25, P90: 0.3}}},
		Shim: &ShimResult{N: 1, SettleSeconds: 1.5, Series: []ShimSeries{{Name: ShimRunc, Runtime: Runc, Median: ShimSample{CPUMs: 30, MainMs: 7, SysmonMs: 5, WorkersMs: 18}},
			{Name: ShimCCI, Runtime: CCI, Median: ShimSample{CPUMs: 33, MainMs: 7, SysmonMs: 8, WorkersMs: 18}}}},
	}
	r.Rootfs.Limits.WriteBps, r.Rootfs.Limits.ReadBps, r.Rootfs.Limits.WriteIOPS, r.Rootfs.Limits.ReadIOPS = 6e6, 6e6, 1000, 1000
	got := map[string]bool{}
	for _, c := range r.Checks() {
		got[c.Name] = c.OK
	}
	for name, ok := range map[string]bool{
		"stdout throughput cci (throttle off) / runc":             true,
		"stdout throttled: forwarded rate":                        true,
		"stdout throttled: container's write rate (backpressure)": true,
		"rootfs direct write, dd bs=1M oflag=direct":              true,
		"rootfs direct read, dd bs=1M iflag=direct":               false,
		"volume vs rootfs, dd bs=1M oflag=direct":                 true,
	} {
		if v, seen := got[name]; !seen || v != ok {
			t.Errorf("check %q: ok %v (present %v), want %v", name, v, seen, ok)
		}
	}
	charts, err := r.Charts()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, c := range charts {
		names[c.Name] = true
		if err := xml.Unmarshal(c.SVG, new(struct{})); err != nil {
			t.Errorf("%s chart is not well-formed XML: %v", c.Name, err)
		}
		if !strings.Contains(string(c.SVG), "<svg") {
			t.Errorf("%s chart is not SVG", c.Name)
		}
	}
	if !names["accuracy"] || !names["start"] || !names["shim"] {
		t.Errorf("charts %v, want accuracy, start and shim", names)
	}
	var md, txt strings.Builder
	r.WriteMarkdown(&md, "rep", charts)
	r.WriteText(&txt)
	for _, want := range []string{"![throttle accuracy](rep-accuracy.svg)", "| check | measured | target | verdict |", "io.max", "MISS",
		"| cci shim, default node config | 33.0 ms | 7.0 ms | 8.0 ms | 18.0 ms |", "1.10x"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if !strings.Contains(txt.String(), "== checks ==") {
		t.Errorf("text output:\n%s", txt.String())
	}
	if cs, err := (&Results{}).Charts(); err != nil || len(cs) != 0 {
		t.Errorf("charts without data: %d, %v; want none", len(cs), err)
	}
}

func TestCtrErrors(t *testing.T) {
	in := "time=\"x\" level=warning msg=\"DEPRECATION: cgroup v1\"\nctr: failed to create shim task: bad\n"
	if got := ctrErrors(in); got != "ctr: failed to create shim task: bad" {
		t.Errorf("ctrErrors = %q", got)
	}
}

func TestNiceCeil(t *testing.T) {
	if niceCeil(0) != 1 || niceCeil(100) != 100 {
		t.Error("niceCeil of 0 or a power of ten")
	}
	for v, want := range map[float64]float64{0.53: 1, 0.18: 0.2, 1.2: 2, 3: 5, 7: 10, 0.05: 0.05} {
		if got := niceCeil(v); got < want-1e-9 || got > want+1e-9 {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
}

// TestReadShimSample reads this test binary, a Go process like the shims,
// as the shim bench reads a daemon.
func TestReadShimSample(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	go func() { // a busy P besides the test's, so that worker threads run
		for {
			select {
			case <-done:
				return
			default:
				_ = strings.Repeat("x", 1<<10)
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	s, err := readShimSample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.Threads < 3 || s.CPUMs <= 0 || s.WorkersMs <= 0 || s.SysmonSlices <= 0 || s.MinorFaults <= 0 || s.PSS <= 0 {
		t.Errorf("sample of this process: %+v; want >= 3 threads, CPU on the workers, sysmon slices, faults and PSS", s)
	}
	if sum := s.MainMs + s.SysmonMs + s.WorkersMs; math.Abs(sum-s.CPUMs) > 1e-6 {
		t.Errorf("threads' CPU %.3f ms != total %.3f ms", sum, s.CPUMs)
	}
	if _, err := readShimSample(1 << 30); err == nil {
		t.Error("a pid that does not exist read without error")
	}
	m := medianSample([]ShimSample{{CPUMs: 1, MinorFaults: 10, Threads: 5}, {CPUMs: 3, MinorFaults: 30, Threads: 7}, {CPUMs: 2, MinorFaults: 20, Threads: 6}})
	if m.CPUMs != 2 || m.MinorFaults != 20 || m.Threads != 6 {
		t.Errorf("medianSample = %+v, want CPU 2, faults 20, threads 6", m)
	}
}
