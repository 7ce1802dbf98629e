package tests

import (
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/bench"
	"github.com/cci-shim/cci-shim/internal/testutil"
)

// TestBenchDensity runs `ccibench density` small: every series (the runc
// handler as is and with RuntimeDefault seccomp, cci on runc, cci on gVisor) starts its pods through CRI, the
// pods' host processes are found and measured, and the pods go again. It
// checks that the bench measures, not what it measures (ccibench reports
// the figures; no timing is asserted here).
func TestBenchDensity(t *testing.T) {
	b := bench.StartWith(t, bench.Options{CRI: true})
	res, err := b.Density(b.Env.Context(), bench.DensityOptions{Pods: 2, Parallel: 2, Settle: time.Second, Measure: time.Second,
		GvisorTOML: bench.GvisorAuto})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{bench.DensityRunc: bench.KindRuncShim, bench.DensityRuncSeccomp: bench.KindRuncShim, bench.DensityCCI: bench.KindCCIShim, bench.DensityGvisor: bench.KindSandbox}
	for _, s := range res.Series {
		kind, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected series %q", s.Name)
			continue
		}
		delete(want, s.Name)
		if s.Skipped != "" {
			if s.Name == bench.DensityGvisor {
				testutil.Unavailable(t, "density: the gVisor series was skipped: %s", s.Skipped)
				continue
			}
			t.Errorf("%s skipped: %s", s.Name, s.Skipped)
			continue
		}
		if len(s.PerPod) != 2 || s.Wall <= 0 {
			t.Errorf("%s: %d pods timed, wall %.3f s; want 2 pods", s.Name, len(s.PerPod), s.Wall)
		}
		if s.PSSPerPod(kind, 2) <= 0 || s.PSSPerPod(bench.KindWorkload, 2) <= 0 {
			t.Errorf("%s: no %s or workload processes measured: %+v", s.Name, kind, s.Usage)
		}
		t.Logf("%s: wall %.2f s, per pod %.2f/%.2f s, we add %.2f MiB PSS per pod", s.Name, s.Wall, s.P50, s.P99, s.PSSPerPod("", 2)/(1<<20))
	}
	for name := range want {
		t.Errorf("series %q missing", name)
	}
	assertClean(t, b.Env)
}
