package shim

import (
	"runtime/debug"
	"sync"
	"time"
)

// A pod's shim does most of its allocating while the pod starts: the specs
// decoded and checked, the bundles written, the backend's task service, the
// log collector and the metrics endpoint set up. containerd's shim harness
// runs the collector at GOGC=40 with a 1.6 MB minimum heap, which made every
// pod's start pay for five to seven collections of a heap that mostly stays
// live. startupGC lets the heap grow (GOGC=startupGCPercent: at most five
// times the live heap) until the pod's first workload container has
// started, then restores the harness's setting and collects once, returning
// the freed pages to the host, so the shim's resident memory afterwards is
// what it would have been. A soft memory limit bounds the phase: a pod
// whose specs are unusually large (a tenant's annotations) is collected at
// startupMemLimit, not only at five times its live heap.
type startupGC struct {
	once      sync.Once
	prev      int
	prevLimit int64
	timer     *time.Timer
}

const (
	startupGCPercent = 400
	startupMemLimit  = 64 << 20
	// startupGCMax ends the relaxed phase for a pod whose workload does
	// not start soon (kubelet pulls the image after the sandbox runs).
	startupGCMax = 20 * time.Second
)

// relaxStartupGC raises GOGC until the returned phase ends.
func relaxStartupGC() *startupGC {
	g := &startupGC{prev: debug.SetGCPercent(startupGCPercent), prevLimit: debug.SetMemoryLimit(startupMemLimit)}
	g.timer = time.AfterFunc(startupGCMax, g.end)
	return g
}

// end restores the collector's setting and releases what startup left;
// only the first call does anything. A nil phase (tests) is a no-op.
func (g *startupGC) end() {
	if g == nil {
		return
	}
	g.once.Do(func() {
		g.timer.Stop()
		debug.SetGCPercent(g.prev)
		debug.SetMemoryLimit(g.prevLimit)
		debug.FreeOSMemory()
	})
}
