package shim

import (
	"runtime/debug"
	"testing"
)

func TestStartupGC(t *testing.T) {
	before := debug.SetGCPercent(40) // the shim harness's setting
	defer debug.SetGCPercent(before)
	limit := debug.SetMemoryLimit(-1) // -1 reads it
	g := relaxStartupGC()
	if got := debug.SetGCPercent(startupGCPercent); got != startupGCPercent {
		t.Fatalf("during startup GOGC = %d, want %d", got, startupGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != startupMemLimit {
		t.Fatalf("during startup the memory limit is %d, want %d", got, startupMemLimit)
	}
	g.end()
	if got := debug.SetGCPercent(40); got != 40 {
		t.Fatalf("after the workload started GOGC = %d, want the harness's 40", got)
	}
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Fatalf("after the workload started the memory limit is %d, want %d again", got, limit)
	}
	debug.SetGCPercent(70) // a later change is not undone by a second end
	g.end()
	if got := debug.SetGCPercent(40); got != 70 {
		t.Fatalf("a second end changed GOGC to %d", got)
	}
	if g.timer.Stop() {
		t.Error("the fallback timer still runs after end")
	}
	var none *startupGC
	none.end() // tests' services have none
}
