//go:build linux

package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/iothrottle"
)

// TestMain lets the test binary be the logs bench's collector process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == CollectorCommand {
		os.Exit(RunCollector(os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestHelpHasNoSideEffects(t *testing.T) {
	envs := func() []string { m, _ := filepath.Glob("/tmp/cci-e2e-*"); return m }
	before := len(envs())
	for _, c := range []struct {
		args []string
		code int
		out  []string // substrings of stdout
	}{
		{[]string{"--help"}, 0, []string{"density", "logs", "burst", "-report"}},
		{[]string{"help", "density"}, 0, []string{"-pods", "-parallel", "-workload", "3 MiB"}},
		{[]string{"burst", "--help"}, 0, []string{"-burst-mib", "±5%"}},
		{[]string{"logs", "-h"}, 0, []string{"-kills", "copytruncate"}},
		{[]string{"help", "nope"}, 2, nil},
		{[]string{"nope"}, 2, nil},
		{[]string{"start", "-pods", "3"}, 2, nil}, // a flag of another command
		{[]string{"burst", "--report", "/nonexistent/dir/r.md"}, 2, nil},
		{nil, 2, nil},
	} {
		var out, errb bytes.Buffer
		if code := Main(c.args, &out, &errb); code != c.code {
			t.Errorf("Main(%q) = %d, want %d; stderr %s", c.args, code, c.code, errb.String())
		}
		for _, s := range c.out {
			if !strings.Contains(out.String(), s) {
				t.Errorf("Main(%q) stdout lacks %q:\n%s", c.args, s, out.String())
			}
		}
	}
	if after := len(envs()); after != before {
		t.Errorf("help created an env: %d -> %d /tmp/cci-e2e-* dirs", before, after)
	}
}

func TestDensityReport(t *testing.T) {
	mib := int64(1 << 20)
	r := &Results{Command: "density", Density: &DensityResult{Pods: 10, Parallel: 4, Workload: WorkloadIdle, Settle: 65 * time.Second, Measure: 20 * time.Second, Series: []DensitySeries{
		{Name: DensityRunc, Handler: "runc", Wall: 2, PerPod: []float64{0.5, 0.6}, P50: 0.5, P99: 0.6,
			Usage: []ProcUsage{{Kind: KindRuncShim, Count: 10, PSS: 50 * mib}, {Kind: KindWorkload, Count: 20, PSS: 5 * mib}}},
		{Name: DensityRuncSeccomp, Handler: "runc", Seccomp: true, Wall: 2.2, PerPod: []float64{0.5, 0.6}, P50: 0.5, P99: 0.6},
		{Name: DensityCCI, Handler: "cci", Wall: 2.1, PerPod: []float64{0.6, 0.7}, P50: 0.6, P99: 0.7,
			Usage:     []ProcUsage{{Kind: KindCCIShim, Count: 10, PSS: 40 * mib}, {Kind: KindRuncShim, Count: 10, PSS: 35 * mib}, {Kind: KindWorkload, Count: 20, PSS: 5 * mib}},
			CPUPerPod: map[string]float64{KindCCIShim: 0.001, KindWorkload: 0.5}},
		{Name: DensityGvisor, Skipped: "runsc is not installed"},
	}}}
	if got := r.Density.Series[2].PSSPerPod("", 10); got != 7.5*float64(mib) {
		t.Errorf("PSS per pod we add = %v, want 7.5 MiB", got)
	}
	checks := map[string]Check{}
	for _, c := range r.Checks() {
		checks[c.Name] = c
	}
	wall := checks["density: 10 pods, 4 at a time, wall cci / runc"]
	wallSeccomp := checks["density: 10 pods, 4 at a time, wall cci / runc + default seccomp"]
	pss := checks["density: host PSS per pod the cci handler adds over runc's (idle)"]
	if !wall.OK || !strings.HasPrefix(wall.Measured, "1.05x") {
		t.Errorf("wall check %+v", wall)
	}
	if !wallSeccomp.OK || !strings.HasPrefix(wallSeccomp.Measured, "0.95x") {
		t.Errorf("wall check against the seccomp baseline %+v", wallSeccomp)
	}
	if !pss.OK || !strings.HasPrefix(pss.Measured, "+2.50 MiB") {
		t.Errorf("PSS check %+v", pss)
	}
	var txt strings.Builder
	r.WriteText(&txt)
	for _, want := range []string{"skipped: runsc is not installed", "7.50 MiB", "0.10% of a core", "PSS was read 1m5s after all pods ran (--settle), CPU per pod measured over the 20s after that"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, txt.String())
		}
	}
	charts, err := r.Charts()
	if err != nil || len(charts) != 2 {
		t.Fatalf("density charts: %d, %v", len(charts), err)
	}
}

func TestBurstPhaseRates(t *testing.T) {
	// 64 MB in the first second, then 6 MB/s for 10 s; the switch at 1.0 s.
	p := BurstPhase{Name: BurstWrite1M, Unit: "B/s", Limit: 6e6, Budget: iothrottle.StartBurst{Bytes: 60e6, Ops: 1 << 40, Window: time.Minute},
		End: iothrottle.BurstEnd{Reason: iothrottle.BurstEndBytes, After: time.Second}}
	for ts := 0.0; ts <= 11.0001; ts += 0.5 {
		b := 64e6 * min(ts, 1)
		if ts > 1 {
			b += 6e6 * (ts - 1)
		}
		p.Timeline = append(p.Timeline, TimePoint{T: ts, Bytes: uint64(b)})
	}
	if err := p.rates(0); err != nil {
		t.Fatal(err)
	}
	if p.BurstRate != 64e6 || !Within(p.Sustained, 6e6, 1e-9) || p.SustainedSeconds != 10 {
		t.Errorf("burst %v, sustained %v over %v", p.BurstRate, p.Sustained, p.SustainedSeconds)
	}
	r := &Results{Burst: &BurstResult{Phases: []BurstPhase{p}}}
	if cs := r.Checks(); len(cs) != 1 || !cs[0].OK {
		t.Errorf("checks %+v", cs)
	}
	if charts, err := r.Charts(); err != nil || len(charts) != 2 { // accuracy and the timeline
		t.Errorf("burst charts: %d, %v", len(charts), err)
	}
	p.End.After = 20 * time.Second
	if err := p.rates(0); err == nil {
		t.Error("a switch after the last sample: want an error")
	}
}

// TestLogScenarios runs every rotation style through the real collector at
// a small size: nothing lost, nothing duplicated; and one style with the
// collector process SIGKILLed (this test binary is the process, TestMain).
func TestLogScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the collector for a few seconds")
	}
	o := LogsOptions{Lines: 2100, Kills: 3, Self: os.Args[0]}.withDefaults()
	for _, sc := range logScenarios {
		r, err := runScenario(context.Background(), t.TempDir(), sc, 0, o)
		if err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		if r.Lost != 0 || r.Duplicated != 0 || r.Delivered != 2100 {
			t.Errorf("%s: %+v", sc.name, r)
		}
	}
	// 4000 lines take at least a second (40 every 10 ms); the first kill
	// comes within 600 ms.
	o.Lines = 4000
	r, err := runScenario(context.Background(), t.TempDir(), logScenarios[0], 3, o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kills == 0 || r.Lost != 0 || r.Duplicated != 0 {
		t.Errorf("rename-create with SIGKILLs: %+v", r)
	}
}

func TestCountSinkAndLatencyLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sink.jsonl")
	os.WriteFile(p, []byte(`{"log":"sc 0 y"}`+"\n"+`{"log":"sc 2 y"}`+"\n"+`{"log":"sc 2 y"}`+"\n"), 0o644)
	c, err := countSink(p, 3)
	if err != nil || c[0] != 1 || c[1] != 0 || c[2] != 2 {
		t.Errorf("counts %v, %v", c, err)
	}
	os.WriteFile(p, []byte(`{"log":"sc 9 y"}`+"\n"), 0o644)
	if _, err := countSink(p, 3); err == nil {
		t.Error("sequence out of range: want an error")
	}
	if seq, sent, ok := parseLatencyLine("lat 7 123"); !ok || seq != 7 || sent != 123 {
		t.Errorf("parseLatencyLine = %d %d %v", seq, sent, ok)
	}
	if _, _, ok := parseLatencyLine("sc 7 123"); ok {
		t.Error("not a latency line")
	}
	xy := cdf([]float64{3, 1, 2, 4})
	if xy[0].X != 1 || xy[0].Y != 0.25 || xy[3].X != 4 || xy[3].Y != 1 {
		t.Errorf("cdf = %v", xy)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		p    proc
		want string
	}{
		{proc{comm: "containerd-shim", exe: "/repo/bin/containerd-shim-cci-v2"}, KindCCIShim},
		{proc{comm: "containerd-shim", exe: "/repo/.tools/bin/containerd-shim-runc-v2 (deleted)"}, KindRuncShim},
		{proc{comm: "exe", exe: "/usr/bin/runsc"}, KindSandbox},
		{proc{comm: "runsc-gofer", exe: "/usr/bin/runsc (deleted)"}, KindSandbox},
		{proc{comm: "sleep", exe: "/bin/busybox"}, KindWorkload},
	} {
		if got := classify(c.p); got != c.want {
			t.Errorf("classify(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
	if !AddedByUs(KindSandbox) || AddedByUs(KindWorkload) {
		t.Error("AddedByUs")
	}
	// This process and its children, at least this one, with memory.
	u := procUsage(podProcs([]int{os.Getpid()}))
	if len(u) == 0 || u[0].PSS <= 0 || u[0].Count < 1 {
		t.Errorf("usage of the test process: %+v", u)
	}
}

// TestDensityRounds: a series run in rounds reports the median wall and
// teardown and the percentiles over every round's pods, and the report
// gives each round's wall.
func TestDensityRounds(t *testing.T) {
	calls := func(create ...float64) map[string][]float64 {
		return map[string][]float64{"RunPodSandbox": make([]float64, len(create)), "CreateContainer": create, "StartContainer": make([]float64, len(create))}
	}
	s := DensitySeries{Name: DensityCCI, Wall: 4, Walls: []float64{4}, Teardown: 3, Teardowns: []float64{3}, PerPod: []float64{1, 2}, Calls: calls(1, 2),
		StartCPU: 0.5, StartCPUs: []float64{0.5},
		StartCPUBy: map[string]float64{StartCPUShims: 0.02, StartCPURest: 0.1}, StartCPUBys: []map[string]float64{{StartCPUShims: 0.02, StartCPURest: 0.1}}}
	s.addRound(&DensitySeries{Wall: 2, Teardown: 1, PerPod: []float64{3}, Calls: calls(3), StartCPU: 0.25,
		StartCPUBy: map[string]float64{StartCPUShims: 0.04, StartCPURest: 0.3}})
	s.addRound(&DensitySeries{Wall: 3, Teardown: 5, PerPod: []float64{4, 5}, Calls: calls(4, 5), StartCPU: 0.75,
		StartCPUBy: map[string]float64{StartCPUShims: 0.03, StartCPURest: 0.2, StartCPUContainerd: 0.05}})
	if got := s.StartCPUBy; got[StartCPUShims] != 0.03 || got[StartCPURest] != 0.2 || got[StartCPUContainerd] != 0.05 || len(got) != 3 {
		t.Errorf("after 3 rounds: start CPU by process %v; want the medians of each key's rounds", got)
	}
	if s.Wall != 3 || s.Teardown != 3 || s.StartCPU != 0.5 || len(s.PerPod) != 5 || s.P50 != 3 || s.P99 != Percentile([]float64{1, 2, 3, 4, 5}, 99) {
		t.Errorf("after 3 rounds: wall %v teardown %v start CPU %v per pod %v p50 %v p99 %v", s.Wall, s.Teardown, s.StartCPU, s.PerPod, s.P50, s.P99)
	}
	base := DensitySeries{Name: DensityRunc, Wall: 2, Walls: []float64{2, 2, 4}}
	r := &Results{Command: "density", Density: &DensityResult{Pods: 2, Parallel: 2, Workload: WorkloadIdle, Rounds: 3, Series: []DensitySeries{base, s}}}
	var txt strings.Builder
	r.WriteText(&txt)
	for _, want := range []string{"3 rounds interleaved (medians)", DensityCCI + ": all running per round 4.000 s, 2.000 s, 3.000 s",
		DensityCCI + ": per pod p50 by call: RunPodSandbox 0.000 s, CreateContainer 3.000 s, StartContainer 0.000 s",
		"host CPU to start per pod, by process",
		DensityCCI + ": vs runc round by round 2.00x, 1.00x, 0.75x, median 1.00x"} {
		if !strings.Contains(txt.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, txt.String())
		}
	}
}

// TestLineRuns: lost and duplicated lines are reported as runs of line
// numbers, at most max of them.
func TestLineRuns(t *testing.T) {
	counts := []int{1, 0, 0, 0, 1, 2, 0, 1, 0, 0}
	lost := func(n int) bool { return n == 0 }
	if got := lineRuns(counts, lost, 5); got != "1-3, 6, 8-9" {
		t.Errorf("lost runs %q", got)
	}
	if got := lineRuns(counts, lost, 2); got != "1-3, 6, ..." {
		t.Errorf("lost runs, at most 2: %q", got)
	}
	if got := lineRuns(counts, func(n int) bool { return n > 1 }, 5); got != "5" {
		t.Errorf("duplicated runs %q", got)
	}
	if got := lineRuns(counts[:1], lost, 5); got != "" {
		t.Errorf("no loss: %q", got)
	}
}
