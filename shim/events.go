package shim

import (
	"context"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cci-shim/cci-shim/podmetrics"
)

// exitDrainTimeout bounds how long an exit event waits for the process's
// output to reach containerd. Output is backpressured, so at exit only the
// pipe and FIFO buffers remain; the bound covers a process that left a
// child holding its stdout open, and a containerd that is restarting.
const exitDrainTimeout = 5 * time.Second

// eventRelay receives the backend's events (its TTRPC_ADDRESS points at this
// shim) and publishes them to containerd. Events of one container keep their
// order; containers do not wait for each other. A task exit is held until the
// process's output has been copied through, so that whoever reacts to the
// exit (ctr, CRI's log writer) has every byte first — that wait holds back
// only the same container's later events.
//
// Like containerd's runc shim, the relay keeps publishing what is queued
// after the shim starts shutting down: publishing runs under a context that
// is never cancelled, and close waits (bounded) for the queues to empty.
type eventRelay struct {
	ctx       context.Context // values only: never cancelled
	publisher events.Publisher
	drain     func(containerID, execID string, timeout time.Duration)
	exited    func(containerID, execID string) // after the drain, before publishing

	mu     sync.Mutex
	queues map[string][]*eventsapi.ForwardRequest // by container id; guarded by mu
	wg     sync.WaitGroup
}

var _ eventsapi.TTRPCEventsService = (*eventRelay)(nil)

func newEventRelay(ctx context.Context, p events.Publisher, drain func(string, string, time.Duration), exited func(string, string)) *eventRelay {
	return &eventRelay{
		ctx:       context.WithoutCancel(ctx),
		publisher: p,
		drain:     drain,
		exited:    exited,
		queues:    map[string][]*eventsapi.ForwardRequest{},
	}
}

// Forward accepts an event at once; the backend's publisher retries slow
// calls, so holding it here would duplicate events.
func (r *eventRelay) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	env := req.GetEnvelope()
	if env == nil || env.Event == nil {
		return &emptypb.Empty{}, nil
	}
	evt, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		log.G(ctx).WithError(err).WithField("topic", env.Topic).Warn("dropping undecodable backend event")
		return &emptypb.Empty{}, nil
	}
	key := containerOf(evt)
	r.mu.Lock()
	defer r.mu.Unlock()
	q, running := r.queues[key]
	r.queues[key] = append(q, req)
	if !running {
		r.wg.Add(1)
		go r.run(key)
	}
	return &emptypb.Empty{}, nil
}

// Publish queues an event of an in-process backend, as Forward does for a
// backend in a process of its own.
func (r *eventRelay) Publish(ctx context.Context, topic string, evt events.Event) error {
	a, err := typeurl.MarshalAnyToProto(evt)
	if err != nil {
		return err
	}
	ns, _ := namespaces.Namespace(ctx)
	_, err = r.Forward(ctx, &eventsapi.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: timestamppb.Now(), Namespace: ns, Topic: topic, Event: a}})
	return err
}

// run publishes key's queue in order until it is empty.
func (r *eventRelay) run(key string) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		q := r.queues[key]
		if len(q) == 0 {
			delete(r.queues, key)
			r.mu.Unlock()
			return
		}
		req := q[0]
		r.queues[key] = q[1:]
		r.mu.Unlock()
		r.publish(req)
	}
}

func (r *eventRelay) publish(req *eventsapi.ForwardRequest) {
	env := req.GetEnvelope()
	evt, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		return // checked in Forward
	}
	if internalExec(evt) {
		return // the shim's own exec (the R27 relay in a sandbox): not the tenant's
	}
	if exit, ok := evt.(*eventstypes.TaskExit); ok {
		execID := exit.ID
		if execID == exit.ContainerID {
			execID = ""
		}
		r.drain(exit.ContainerID, execID, exitDrainTimeout)
		if r.exited != nil {
			r.exited(exit.ContainerID, execID)
		}
	}
	if err := r.publisher.Publish(namespaces.WithNamespace(r.ctx, env.Namespace), env.Topic, evt); err != nil {
		log.G(r.ctx).WithError(err).WithField("topic", env.Topic).Error("relaying backend event")
	}
}

// flush waits until every queued event has been published, or timeout.
func (r *eventRelay) flush(timeout time.Duration) bool {
	return waitTimeout(&r.wg, timeout)
}

// containerOf returns the container a task event is about ("" for none:
// TaskIO and events of other kinds).
func containerOf(evt any) string {
	if e, ok := evt.(interface{ GetContainerID() string }); ok {
		return e.GetContainerID()
	}
	return ""
}

// internalExec reports whether an event is about the exec the shim runs in a
// sandbox for the pod's metrics endpoint (podmetrics.RelayExecID).
func internalExec(evt any) bool {
	switch e := evt.(type) {
	case *eventstypes.TaskExecAdded:
		return e.ExecID == podmetrics.RelayExecID
	case *eventstypes.TaskExecStarted:
		return e.ExecID == podmetrics.RelayExecID
	case *eventstypes.TaskExit:
		return e.ID == podmetrics.RelayExecID
	}
	return false
}
