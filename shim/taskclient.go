package shim

import (
	"context"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Task service names. Task v2 and v3 share every message, so one client
// speaks both; only the service name on the wire differs. Kata's shim serves
// v2, containerd 2.x's runc shim serves v3.
const (
	taskServiceV2 = "containerd.task.v2.Task"
	taskServiceV3 = "containerd.task.v3.Task"
)

// taskClient is a Task API client for a backend shim of either version.
type taskClient struct {
	c       *ttrpc.Client
	service string
}

var _ taskv3.TTRPCTaskService = (*taskClient)(nil)

func newTaskClient(c *ttrpc.Client, version int32) *taskClient {
	service := taskServiceV3
	if version < 3 {
		service = taskServiceV2
	}
	return &taskClient{c: c, service: service}
}

// call invokes method and turns the backend's gRPC status back into an
// errdefs error, so that the front can re-encode it for containerd unchanged.
func call[Resp any](ctx context.Context, t *taskClient, method string, req any) (*Resp, error) {
	resp := new(Resp)
	if err := t.c.Call(ctx, t.service, method, req, resp); err != nil {
		return nil, errgrpc.ToNative(err)
	}
	return resp, nil
}

func (t *taskClient) State(ctx context.Context, r *taskv3.StateRequest) (*taskv3.StateResponse, error) {
	return call[taskv3.StateResponse](ctx, t, "State", r)
}

// Create, Start, Exec and Delete change what the backend holds. ttrpc does
// not carry a cancellation to the server: once sent, the backend carries the
// call out whatever our caller does. So their answer is always awaited
// (context.WithoutCancel); otherwise a caller that goes away (containerd
// restarting) would make this shim forget a task the backend then creates,
// which nobody would ever delete.

func (t *taskClient) Create(ctx context.Context, r *taskv3.CreateTaskRequest) (*taskv3.CreateTaskResponse, error) {
	return call[taskv3.CreateTaskResponse](context.WithoutCancel(ctx), t, "Create", r)
}

func (t *taskClient) Start(ctx context.Context, r *taskv3.StartRequest) (*taskv3.StartResponse, error) {
	return call[taskv3.StartResponse](context.WithoutCancel(ctx), t, "Start", r)
}

func (t *taskClient) Delete(ctx context.Context, r *taskv3.DeleteRequest) (*taskv3.DeleteResponse, error) {
	return call[taskv3.DeleteResponse](context.WithoutCancel(ctx), t, "Delete", r)
}

func (t *taskClient) Pids(ctx context.Context, r *taskv3.PidsRequest) (*taskv3.PidsResponse, error) {
	return call[taskv3.PidsResponse](ctx, t, "Pids", r)
}

func (t *taskClient) Pause(ctx context.Context, r *taskv3.PauseRequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](ctx, t, "Pause", r)
}

func (t *taskClient) Resume(ctx context.Context, r *taskv3.ResumeRequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](ctx, t, "Resume", r)
}

func (t *taskClient) Checkpoint(ctx context.Context, r *taskv3.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](ctx, t, "Checkpoint", r)
}

func (t *taskClient) Kill(ctx context.Context, r *taskv3.KillRequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](ctx, t, "Kill", r)
}

func (t *taskClient) Exec(ctx context.Context, r *taskv3.ExecProcessRequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](context.WithoutCancel(ctx), t, "Exec", r)
}

func (t *taskClient) ResizePty(ctx context.Context, r *taskv3.ResizePtyRequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](ctx, t, "ResizePty", r)
}

func (t *taskClient) CloseIO(ctx context.Context, r *taskv3.CloseIORequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](ctx, t, "CloseIO", r)
}

func (t *taskClient) Update(ctx context.Context, r *taskv3.UpdateTaskRequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](ctx, t, "Update", r)
}

func (t *taskClient) Wait(ctx context.Context, r *taskv3.WaitRequest) (*taskv3.WaitResponse, error) {
	return call[taskv3.WaitResponse](ctx, t, "Wait", r)
}

func (t *taskClient) Stats(ctx context.Context, r *taskv3.StatsRequest) (*taskv3.StatsResponse, error) {
	return call[taskv3.StatsResponse](ctx, t, "Stats", r)
}

func (t *taskClient) Connect(ctx context.Context, r *taskv3.ConnectRequest) (*taskv3.ConnectResponse, error) {
	return call[taskv3.ConnectResponse](ctx, t, "Connect", r)
}

func (t *taskClient) Shutdown(ctx context.Context, r *taskv3.ShutdownRequest) (*emptypb.Empty, error) {
	return call[emptypb.Empty](ctx, t, "Shutdown", r)
}
