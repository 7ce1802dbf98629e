package tests

import (
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/bench"
)

// TestBenchShim runs `ccibench shim` small: a sleeping container per
// runtime, one at a time, and each daemon read. It checks that the bench
// finds and measures both shims' daemons, not what they cost (ccibench
// reports that; no figure is asserted here).
func TestBenchShim(t *testing.T) {
	b := bench.Start(t)
	res, err := b.Shim(b.Env.Context(), bench.ShimOptions{N: 2, Settle: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Series) != 2 {
		t.Fatalf("series %+v, want the runc shim and the cci shim", res.Series)
	}
	for _, s := range res.Series {
		if len(s.Samples) != 2 {
			t.Errorf("%s: %d samples, want 2", s.Name, len(s.Samples))
		}
		for _, m := range s.Samples {
			// Both are Go daemons that created and started a container.
			if m.Threads < 3 || m.MainMs <= 0 || m.SysmonMs <= 0 || m.WorkersMs <= 0 || m.MinorFaults <= 0 || m.PSS <= 0 {
				t.Errorf("%s: sample %+v: want >= 3 threads, CPU on each kind, faults and PSS", s.Name, m)
			}
		}
		t.Logf("%s: median CPU %.1f ms (sysmon %.1f), %d faults, PSS %.2f MiB", s.Name, s.Median.CPUMs, s.Median.SysmonMs, s.Median.MinorFaults, float64(s.Median.PSS)/(1<<20))
	}
	assertClean(t, b.Env)
}
