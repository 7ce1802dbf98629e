//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

const (
	// sampleEvery is how often a known shim is sampled (two small /proc
	// reads); rescanning /proc for shims and reading stats.json happen
	// every 5th and 25th sample.
	sampleEvery = 20 * time.Millisecond
)

// shimSampler polls the shims of a running pod — the cci shim and
// containerd's runc shim — for memory and CPU time, and the cci shim's
// stats file.
type shimSampler struct {
	done chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex // guards the fields below
	shims map[string]*shimUsage
	stats *iothrottle.Stats
	cpu   []cpuSample
}

// cpuSample is the machine's aggregate CPU time (all CPUs, in clock ticks)
// at t.
type cpuSample struct {
	t           time.Time
	busy, total uint64
}

// shimUsage is what was seen of the shims of one binary.
type shimUsage struct {
	peakRSS int64           // bytes
	cpu     float64         // seconds, summed over the pids seen
	lastCPU map[int]float64 // per pid, the last CPU seconds read
}

func (b *Bench) startShimSampler(ctx context.Context, podID string) *shimSampler {
	s := &shimSampler{done: make(chan struct{}), shims: map[string]*shimUsage{}}
	bins := []string{e2eenv.CCIShimBinary, e2eenv.RuncShimBinary}
	for _, bin := range bins {
		s.shims[bin] = &shimUsage{lastCPU: map[int]float64{}}
	}
	statsPath := filepath.Join(b.Env.StateDir, b.Env.Namespace, podID, "stats.json")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		pids := map[string][]int{}
		for i := 0; ; i++ {
			if busy, total, ok := machineCPU(); ok {
				s.mu.Lock()
				s.cpu = append(s.cpu, cpuSample{time.Now(), busy, total})
				s.mu.Unlock()
			}
			for _, bin := range bins {
				// Rescan while none is alive: the first pid seen may be
				// the short-lived `start` process rather than the daemon.
				if !s.sample(bin, pids[bin]) && i%5 == 0 {
					pids[bin] = b.Env.ShimPIDs(bin)
				}
			}
			if i%25 == 0 {
				if st, ok := readShimStats(statsPath, podID); ok {
					s.mu.Lock()
					s.stats = st
					s.mu.Unlock()
				}
			}
			select {
			case <-s.done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// sample reads pids' memory and CPU time; it reports whether one is alive.
func (s *shimSampler) sample(bin string, pids []int) bool {
	alive := false
	for _, pid := range pids {
		hwm, rss := procMemory(pid)
		cpu, ok := procCPU(pid)
		alive = alive || rss > 0
		s.mu.Lock()
		u := s.shims[bin]
		u.peakRSS = max(u.peakRSS, hwm, rss)
		if ok {
			u.lastCPU[pid] = cpu
		}
		s.mu.Unlock()
	}
	return alive
}

// stop ends the sampling and returns what was seen of the cci and runc
// shims, and the last stats of the cci shim.
func (s *shimSampler) stop() (cci, runc shimUsage, stats *iothrottle.Stats) {
	close(s.done)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.shims {
		for _, c := range u.lastCPU {
			u.cpu += c
		}
	}
	return *s.shims[e2eenv.CCIShimBinary], *s.shims[e2eenv.RuncShimBinary], s.stats
}

// busyBetween returns the fraction of all CPUs' time that was busy between
// the first sample at or after from and the last at or before to; 0 when
// no two samples lie in that interval.
func (s *shimSampler) busyBetween(from, to time.Time) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a, b *cpuSample
	for i := range s.cpu {
		c := &s.cpu[i]
		if a == nil && !c.t.Before(from) {
			a = c
		}
		if !c.t.After(to) {
			b = c
		}
	}
	if a == nil || b == nil || b.total <= a.total {
		return 0
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total)
}

// readShimStats reads container id's stdio stats from the shim's
// stats.json (see shim/throttle.go).
func readShimStats(path, id string) (*iothrottle.Stats, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	var f struct {
		Containers map[string]struct {
			Stdio iothrottle.Stats `json:"stdio"`
		} `json:"containers"`
	}
	if json.Unmarshal(data, &f) != nil {
		return nil, false
	}
	c, ok := f.Containers[id]
	if !ok {
		return nil, false
	}
	return &c.Stdio, true
}
