package shim

import (
	"sync"
	"sync/atomic"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/iothrottle"
)

// container is one container of the pod as this shim tracks it. Its host
// resources (bundle, FIFOs, rootfs device, the task in the backend) belong to
// the pod's owner under the container's id; the fields here are what the RPCs
// need. Fields without a guard are set before the container is registered
// and never change.
type container struct {
	id          string
	bundle      string      // the backend's bundle (ours)
	frontBundle string      // containerd's bundle
	spec        *specs.Spec // as the backend got it
	name        string      // for tenant-facing errors
	gpu         bool        // has GPUs: execs get the driver environment
	stdio       *iothrottle.Limiter
	rootfs      *rootfsThrottle // nil when the rootfs is not a block device

	pid atomic.Uint32 // the init process, once known

	mu    sync.Mutex
	procs map[string]*processIO // by exec id, "" for init; guarded by mu
}

func newContainer(id string) *container {
	return &container{id: id, procs: map[string]*processIO{}}
}

func (c *container) proc(execID string) *processIO {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[execID]
}

// addProc registers an exec's stdio; it reports false if the id is taken.
func (c *container) addProc(execID string, p *processIO) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.procs[execID]; ok {
		return false
	}
	c.procs[execID] = p
	return true
}

// removeProcs takes the stdio of one exec, or of every process when execID
// is "" (the container is going).
func (c *container) removeProcs(execID string) []*processIO {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*processIO
	if execID != "" {
		if p := c.procs[execID]; p != nil {
			out = append(out, p)
		}
		delete(c.procs, execID)
		return out
	}
	for id, p := range c.procs {
		out = append(out, p)
		delete(c.procs, id)
	}
	return out
}
