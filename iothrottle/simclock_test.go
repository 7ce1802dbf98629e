package iothrottle

import (
	"context"
	"slices"
	"sync"
	"time"
)

// simClock is a discrete-event clock for n participants (copy loops). Time
// stands still while any participant runs; when all live participants are
// asleep it jumps to the earliest deadline and wakes that sleeper. Sources
// and sinks in these tests never block, so the simulation is exact.
type simClock struct {
	mu      sync.Mutex
	t       time.Time
	active  int
	waiters []*simWaiter
}

type simWaiter struct {
	at time.Time
	ch chan struct{}
}

var simEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newSimClock(participants int) *simClock {
	return &simClock{t: simEpoch, active: participants}
}

func (c *simClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) sleep(ctx context.Context, d time.Duration, _ *timerSlot) error {
	c.mu.Lock()
	w := &simWaiter{at: c.t.Add(d), ch: make(chan struct{})}
	c.waiters = append(c.waiters, w)
	c.advanceLocked()
	c.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		c.waiters = slices.DeleteFunc(c.waiters, func(x *simWaiter) bool { return x == w })
		c.mu.Unlock()
		return ctx.Err()
	}
}

// done retires a participant.
func (c *simClock) done() {
	c.mu.Lock()
	c.active--
	c.advanceLocked()
	c.mu.Unlock()
}

func (c *simClock) advanceLocked() {
	if len(c.waiters) == 0 || len(c.waiters) < c.active {
		return
	}
	i := 0
	for j, w := range c.waiters {
		if w.at.Before(c.waiters[i].at) {
			i = j
		}
	}
	w := c.waiters[i]
	c.waiters = slices.Delete(c.waiters, i, i+1)
	if w.at.After(c.t) {
		c.t = w.at
	}
	close(w.ch)
}

// stallClock never wakes a sleeper; it reports each sleep on sleeping.
type stallClock struct{ sleeping chan struct{} }

func (stallClock) now() time.Time { return simEpoch }

func (c stallClock) sleep(ctx context.Context, _ time.Duration, _ *timerSlot) error {
	c.sleeping <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}
