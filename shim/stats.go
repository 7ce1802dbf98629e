package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cci-shim/cci-shim/shim/podstats"
)

// statsInterval is how often the pod's stats file is rewritten.
const statsInterval = time.Second

// writeStatsLoop keeps the stats file current until ctx ends.
func (s *service) writeStatsLoop(ctx context.Context) {
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.writeStats()
		}
	}
}

// writeStats writes the pod's stats file. The containers are taken under
// the lock; cgroup reads and the file write happen outside it, so no RPC
// waits on them.
func (s *service) writeStats() {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	if len(cs) == 0 {
		return
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
	doc := podstats.Pod{Time: time.Now(), PodIdentity: pod, Containers: out}
	if c := s.collector.Load(); c != nil {
		st := c.Stats()
		doc.Logs = &st
	}
	if data, err := json.Marshal(doc); err == nil {
		writeFileAtomic(filepath.Join(s.podDir, podstats.File), data)
	}
}
