package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cci-shim/cci-shim/shim/podstats"
)

// The stats file's cadence. It is rewritten statsMinInterval after a
// container of the pod is created, started, exits or is deleted, and while
// its figures change; each rewrite that finds them unchanged doubles the
// wait, up to statsMaxInterval, which is kubelet's cAdvisor housekeeping
// interval. So an active pod's figures are at most a second old, and an
// idle pod's shim wakes for the file once in ten seconds rather than every
// second: on a host where each wakeup is dear (a PVM guest), the once-a-
// second rewrite was most of an idle shim's CPU.
const (
	statsMinInterval = time.Second
	statsMaxInterval = 10 * time.Second
)

// nextStatsWait returns the wait before the next rewrite, after a rewrite
// that found the figures changed or not.
func nextStatsWait(prev time.Duration, changed bool) time.Duration {
	if changed {
		return statsMinInterval
	}
	return min(max(2*prev, statsMinInterval), statsMaxInterval)
}

// statsChanged asks the stats writer for a rewrite within statsMinInterval:
// the pod's set of containers or their states changed.
func (s *service) statsChanged() {
	select {
	case s.statsKick <- struct{}{}:
	default: // one is pending
	}
}

// writeStatsLoop keeps the stats file current until ctx ends.
func (s *service) writeStatsLoop(ctx context.Context) {
	wait := statsMaxInterval // nothing to write before a container exists
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var last []byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.statsKick:
			// Only the first kick of a wait re-arms the timer: a stream
			// of changes postpones the rewrite by a second at most once.
			if wait > statsMinInterval {
				wait = statsMinInterval
				timer.Reset(wait)
			}
			continue
		case <-timer.C:
		}
		figures := s.writeStats()
		wait = nextStatsWait(wait, figures != nil && !bytes.Equal(figures, last))
		last = figures
		timer.Reset(wait)
	}
}

// writeStats writes the pod's stats file and returns its figures: the
// file's JSON without its time, nil when the pod has no container and
// nothing was written. The containers are taken under the lock; cgroup
// reads and the file write happen outside it, so no RPC waits on them.
func (s *service) writeStats() []byte {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	if len(cs) == 0 {
		return nil
	}
	out := make(map[string]podstats.Container, len(cs))
	var pod podstats.PodIdentity
	for _, c := range cs {
		st := podstats.Container{Stdio: c.stdio.Stats()}
		pod, st.ContainerIdentity = podstats.FromCRI(c.spec.Annotations)
		if t := c.rootfs; t != nil {
			st.Rootfs = &podstats.Rootfs{Device: fmt.Sprintf("%d:%d", t.dev.Major, t.dev.Minor), Limits: t.limits}
			if io, err := t.io(); err == nil {
				st.Rootfs.IO = &io
			}
		}
		out[c.id] = st
	}
	doc := podstats.Pod{PodIdentity: pod, Containers: out}
	if c := s.collector.Load(); c != nil {
		st := c.Stats()
		doc.Logs = &st
	}
	figures, err := json.Marshal(doc)
	if err != nil {
		return nil
	}
	doc.Time = time.Now()
	if data, err := json.Marshal(doc); err == nil {
		writeFileAtomic(filepath.Join(s.podDir, podstats.File), data)
	}
	return figures
}
