package shim

import (
	"context"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/emptypb"
)

// exitDrainTimeout bounds how long an exit event waits for the process's
// output to reach containerd. Output is backpressured, so at exit only the
// pipe and FIFO buffers remain; the bound covers a process that left a
// child holding its stdout open.
const exitDrainTimeout = 5 * time.Second

// eventRelay receives the backend's events (its TTRPC_ADDRESS points at this
// shim) and publishes them to containerd in order. A task exit is held until
// the process's output has been copied through, so that whoever reacts to the
// exit (ctr, CRI's log writer) has every byte first.
type eventRelay struct {
	publisher shim.Publisher
	drain     func(containerID, execID string, timeout time.Duration)
	queue     chan *eventsapi.ForwardRequest
}

var _ eventsapi.TTRPCEventsService = (*eventRelay)(nil)

func newEventRelay(ctx context.Context, p shim.Publisher, drain func(string, string, time.Duration)) *eventRelay {
	r := &eventRelay{publisher: p, drain: drain, queue: make(chan *eventsapi.ForwardRequest, 256)}
	go r.run(ctx)
	return r
}

// Forward accepts an event at once; the backend's publisher retries slow
// calls, so holding it here would duplicate events.
func (r *eventRelay) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	select {
	case r.queue <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &emptypb.Empty{}, nil
}

func (r *eventRelay) run(ctx context.Context) {
	for {
		var req *eventsapi.ForwardRequest
		select {
		case req = <-r.queue:
		case <-ctx.Done():
			return
		}
		env := req.GetEnvelope()
		if env == nil || env.Event == nil {
			continue
		}
		evt, err := typeurl.UnmarshalAny(env.Event)
		if err != nil {
			log.G(ctx).WithError(err).WithField("topic", env.Topic).Warn("dropping undecodable backend event")
			continue
		}
		if exit, ok := evt.(*eventstypes.TaskExit); ok {
			execID := exit.ID
			if execID == exit.ContainerID {
				execID = ""
			}
			r.drain(exit.ContainerID, execID, exitDrainTimeout)
		}
		if err := r.publisher.Publish(namespaces.WithNamespace(ctx, env.Namespace), env.Topic, evt); err != nil {
			log.G(ctx).WithError(err).WithField("topic", env.Topic).Error("relaying backend event")
		}
	}
}
