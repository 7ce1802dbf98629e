package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"github.com/containerd/log"

	"github.com/cci-shim/cci-shim/iothrottle"
)

// stdio is the set of stdio paths of one process. With a terminal, stdout
// carries the pty and stderr is empty: nothing differs here.
type stdio struct {
	stdin, stdout, stderr string
}

// processIO sits between the backend and containerd for one process. The
// backend writes to FIFOs this shim owns; the shim copies them to the FIFOs
// containerd created, and copies containerd's stdin FIFO to the backend. Later
// rules (the stdout throttle) act on this path.
type processIO struct {
	front   stdio // containerd's paths
	backend stdio // what the backend is given

	closers []io.Closer
	outputs sync.WaitGroup // stdout and stderr copies
	stdinWG sync.WaitGroup
	stdinW  io.Closer // our writer to the backend's stdin, closed on EOF or CloseIO
	once    sync.Once
	dir     string // where our FIFOs live
}

// interposable reports whether a stdio path is a FIFO path we can sit on.
// Other schemes (binary://, file://) are logging drivers configured by the
// node's containerd client, not tenant input, and are passed through.
func interposable(p string) bool {
	if p == "" {
		return false
	}
	u, err := url.Parse(p)
	return err == nil && (u.Scheme == "" || u.Scheme == "fifo")
}

// newProcessIO creates our FIFOs for the process under dir and starts the
// copies. The copies block until both sides have opened their ends, so the
// backend may open its side later, during Create or Exec.
//
// Preconditions: dir exists and belongs to this shim.
//
// lim throttles stdout and stderr together (R14).
//
// Without a limiter there is nothing for the shim to do on the path: the
// backend gets containerd's own FIFOs and no copy costs CPU (an extra copy
// of a saturated stream costs about a fifth of its throughput on 2 cores).
func newProcessIO(ctx context.Context, dir, name string, front stdio, lim *iothrottle.Limiter) (_ *processIO, retErr error) {
	p := &processIO{front: front, backend: front, dir: dir}
	if lim == nil {
		return p, nil
	}
	defer func() {
		if retErr != nil {
			p.close()
		}
	}()
	open := func(path string, flag int) (io.ReadWriteCloser, error) {
		f, err := fifo.OpenFifo(ctx, path, flag, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening fifo %s: %w", path, err)
		}
		p.closers = append(p.closers, f)
		return f, nil
	}
	const (
		rd   = syscall.O_RDONLY | syscall.O_NONBLOCK
		wr   = syscall.O_WRONLY | syscall.O_NONBLOCK
		rdwr = syscall.O_RDWR
	)
	for _, s := range []struct {
		front   string
		backend *string
		suffix  string
	}{
		{front.stdout, &p.backend.stdout, "stdout"},
		{front.stderr, &p.backend.stderr, "stderr"},
	} {
		if !interposable(s.front) {
			continue
		}
		ours := filepath.Join(dir, name+"-"+s.suffix)
		src, err := open(ours, rd|syscall.O_CREAT)
		if err != nil {
			return nil, err
		}
		// containerd's FIFO is opened for reading and writing: this shim
		// then always holds a reader, so a containerd restart (its reader
		// gone for a while) never ends the copy with EPIPE. Writes block
		// once the pipe is full — the container is backpressured — and the
		// restarted containerd reopens the FIFO and reads on where it
		// stopped: nothing lost, nothing repeated. containerd's runc shim
		// does the same.
		dst, err := open(s.front, rdwr)
		if err != nil {
			return nil, err
		}
		*s.backend = ours
		p.outputs.Add(1)
		go func() {
			defer p.outputs.Done()
			copyStream(ctx, dst, src, s.suffix, lim)
			dst.Close()
		}()
	}
	if interposable(front.stdin) {
		ours := filepath.Join(dir, name+"-stdin")
		dst, err := open(ours, wr|syscall.O_CREAT)
		if err != nil {
			return nil, err
		}
		src, err := open(front.stdin, rd)
		if err != nil {
			return nil, err
		}
		p.backend.stdin = ours
		p.stdinW = dst
		p.stdinWG.Add(1)
		go func() {
			defer p.stdinWG.Done()
			copyStream(ctx, dst, src, "stdin", nil)
			dst.Close()
		}()
	}
	return p, nil
}

// copyStream copies until EOF or an error on either side through lim (nil:
// unthrottled), with one buffer for the stream's life. A FIFO we closed
// ourselves (process deleted, Create failed) ends the copy quietly.
func copyStream(ctx context.Context, dst io.Writer, src io.Reader, stream string, lim *iothrottle.Limiter) {
	_, err := lim.Copy(ctx, dst, src, make([]byte, iothrottle.DefaultBufferSize))
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) &&
		!errors.Is(err, fifo.ErrReadClosed) && !errors.Is(err, fifo.ErrWriteClosed) && !errors.Is(err, context.Canceled) {
		log.G(ctx).WithError(err).WithField("stream", stream).Warn("copying stdio")
	}
}

// waitOutput waits until stdout and stderr have reached EOF and been flushed
// to containerd, or until timeout. It reports whether they finished.
func (p *processIO) waitOutput(timeout time.Duration) bool {
	return waitTimeout(&p.outputs, timeout)
}

// waitTimeout waits for wg, or until timeout. It reports whether wg was done.
func waitTimeout(wg *sync.WaitGroup, timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// closeStdin ends the stdin copy: it lets data already written by the client
// through for a moment, then closes the backend's stdin.
func (p *processIO) closeStdin() {
	if p.stdinW == nil {
		return
	}
	if !waitTimeout(&p.stdinWG, time.Second) {
		p.stdinW.Close()
	}
}

// close closes every FIFO end and removes our FIFOs. Pending copies end.
func (p *processIO) close() {
	p.once.Do(func() {
		for _, c := range p.closers {
			c.Close()
		}
		for _, path := range []string{p.backend.stdin, p.backend.stdout, p.backend.stderr} {
			if path != "" && filepath.Dir(path) == p.dir {
				os.Remove(path)
			}
		}
	})
}
