package shim

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	runcTask "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
)

// inProcessAddress names the backend of a pod whose task service runs in
// this shim: there is no socket and no process of its own to record.
const inProcessAddress = "in-process"

// startInProcessBackend runs containerd's runc task service (the code of
// containerd-shim-runc-v2) inside this shim, for backends whose adapter
// says so (Traits().InProcess): runc, and runsc driven through it. The pod
// then has one shim process instead of two — half the per-pod memory and
// one process start less. The service is served over ttrpc on an in-memory
// pipe, so the forwarding code, its error codes and its tests are the same
// as for a backend in a process of its own; its events go to the relay
// directly. This shim's reaper (containerd's shim harness reaps on SIGCHLD)
// is the runc service's monitor.
func startInProcessBackend(pub events.Publisher) backendStarter {
	return func(ctx context.Context, l *launch, recordStarted func(address string) error, onClose func()) (*backendShim, error) {
		if err := recordStarted(inProcessAddress); err != nil {
			return nil, err
		}
		// Its own shutdown service: the runc service's Shutdown must not end
		// this shim, which tears the pod down itself.
		_, sd := shutdown.WithShutdown(context.WithoutCancel(ctx))
		svc, err := runcTask.NewTaskService(context.WithoutCancel(ctx), relayPublisher{pub}, sd)
		if err != nil {
			return nil, fmt.Errorf("starting the in-process runc task service: %w", err)
		}
		server, err := ttrpc.NewServer()
		if err != nil {
			return nil, err
		}
		taskv3.RegisterTTRPCTaskService(server, svc)
		clientEnd, serverEnd := net.Pipe()
		ln := newPipeListener(serverEnd)
		go server.Serve(context.WithoutCancel(ctx), ln)
		conn := ttrpc.NewClient(clientEnd, ttrpc.WithOnClose(onClose))
		done := make(chan struct{})
		close(done)
		b := &backendShim{inProcess: true, address: inProcessAddress, version: 3, conn: conn, task: newTaskClient(conn, 3),
			logs: closerFunc(func() error { return server.Close() }), logDone: done}
		log.G(ctx).Debug("runc task service running in process")
		return b, nil
	}
}

// relayPublisher adapts a publisher to shim.Publisher (Close does nothing:
// the relay outlives the backend).
type relayPublisher struct{ events.Publisher }

func (relayPublisher) Close() error { return nil }

// closerFunc is an io.Closer.
type closerFunc func() error

func (f closerFunc) Close() error { return f() }

var _ io.Closer = closerFunc(nil)

// pipeListener hands out one in-memory connection, then blocks until
// closed: the in-process task service's only client is this shim.
type pipeListener struct {
	once   sync.Once
	conn   chan net.Conn
	closed chan struct{}
}

func newPipeListener(c net.Conn) *pipeListener {
	l := &pipeListener{conn: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.conn <- c
	return l
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conn:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return inProcessAddress }
