package shim

import (
	"runtime/debug"
	"testing"
)

func TestStartupGC(t *testing.T) {
	before := debug.SetGCPercent(40) // the shim harness's setting
	defer debug.SetGCPercent(before)
	g := relaxStartupGC()
	if got := debug.SetGCPercent(startupGCPercent); got != startupGCPercent {
		t.Fatalf("during startup GOGC = %d, want %d", got, startupGCPercent)
	}
	g.end()
	if got := debug.SetGCPercent(40); got != 40 {
		t.Fatalf("after the workload started GOGC = %d, want the harness's 40", got)
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
