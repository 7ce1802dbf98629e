package shim

import (
	"context"
	"os"
	"path/filepath"
	"time"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/log"

	"github.com/cci-shim/cci-shim/sandbox"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Delete forwards the delete, then releases what the process held here: its
// stdio copies and, for a container, its backend bundle.
func (s *service) Delete(ctx context.Context, r *taskv3.DeleteRequest) (*taskv3.DeleteResponse, error) {
	c, t, err := s.get(r.ID)
	if err != nil {
		return nil, err
	}
	resp, err := t.Delete(ctx, r)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	var procs []*processIO
	if r.ExecID != "" {
		if p := c.procs[r.ExecID]; p != nil {
			procs = append(procs, p)
		}
		delete(c.procs, r.ExecID)
	} else {
		for _, p := range c.procs {
			procs = append(procs, p)
		}
		delete(s.containers, r.ID)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.waitOutput(time.Second)
		p.close()
	}
	if r.ExecID == "" {
		removeBundle(ctx, c.bundle)
		c.rootfs.close()
		os.RemoveAll(filepath.Join(s.ioDir(), r.ID))
	}
	return resp, nil
}

// Shutdown stops the backend and exits once the pod has no container left;
// containerd calls it after each delete.
func (s *service) Shutdown(ctx context.Context, r *taskv3.ShutdownRequest) (*emptypb.Empty, error) {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 {
		return &emptypb.Empty{}, nil
	}
	s.stopBackend(ctx, r.ID)
	s.drainLogs(ctx)
	if s.podHasGPU.Load() {
		s.gpus.release(ctx, s.gpuKey)
	}
	if err := sandbox.Cleanup(s.volumeDir); err != nil {
		log.G(ctx).WithError(err).Warn("removing pod volumes")
	}
	if err := os.RemoveAll(s.podDir); err != nil {
		log.G(ctx).WithError(err).Warn("removing pod state")
	}
	removeSocket(s.address)
	s.shutdown.Shutdown()
	return &emptypb.Empty{}, nil
}

// stopBackend stops the backend shim if it runs.
func (s *service) stopBackend(ctx context.Context, id string) {
	s.mu.Lock()
	b := s.backend
	s.backend = nil // from here a closed connection is expected
	s.mu.Unlock()
	if b != nil {
		b.stop(context.WithoutCancel(ctx), id)
		os.Remove(filepath.Join(s.podDir, backendRecordFile))
	}
}

// removeBundle unmounts whatever is left on the backend bundle's rootfs and
// removes the bundle.
func removeBundle(ctx context.Context, bundle string) {
	if err := mount.UnmountRecursive(filepath.Join(bundle, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmounting backend rootfs")
	}
	if err := os.RemoveAll(bundle); err != nil {
		log.G(ctx).WithError(err).Warn("removing backend bundle")
	}
}
