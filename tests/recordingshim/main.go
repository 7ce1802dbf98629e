// Command recordingshim is a stand-in for containerd-shim-kata-v2 in the Kata
// adapter's contract test, where no KVM guest can boot. It speaks what Kata's
// shim speaks: a start subcommand that prints a bare address (the legacy
// bootstrap), the task v2 API over ttrpc and events to TTRPC_ADDRESS. Every
// request it receives, with its bootstrap input and environment, is appended
// as a JSON line to $RECORD_FILE, so the test can check what the cci shim
// sent. Processes are simulated: Kill "exits" them.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Record is one line of the record file.
type Record struct {
	Method  string          `json:"method"`
	Request []byte          `json:"request,omitempty"` // the request, protobuf-encoded
	Cwd     string          `json:"cwd,omitempty"`
	Args    []string        `json:"args,omitempty"`
	Env     []string        `json:"env,omitempty"`
	Stdin   []byte          `json:"stdin,omitempty"`
	Spec    json.RawMessage `json:"spec,omitempty"`
}

func record(r Record) {
	f, err := os.OpenFile(os.Getenv("RECORD_FILE"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "recordingshim:", err)
		os.Exit(2)
	}
	defer f.Close()
	line, _ := json.Marshal(r)
	f.Write(append(line, '\n'))
}

func flagArg(name string) string {
	for i, a := range os.Args {
		if a == "-"+name && i+1 < len(os.Args) {
			return os.Args[i+1]
		}
	}
	return ""
}

func main() {
	action := os.Args[len(os.Args)-1]
	cwd, _ := os.Getwd()
	switch action {
	case "start":
		stdin, _ := io.ReadAll(os.Stdin)
		spec, _ := os.ReadFile("config.json")
		record(Record{Method: "start", Cwd: cwd, Args: os.Args[1:], Env: os.Environ(), Stdin: stdin, Spec: spec})
		sum := sha256.Sum256([]byte(cwd))
		sock := filepath.Join(os.TempDir(), fmt.Sprintf("recshim-%x.sock", sum[:8]))
		cmd := exec.Command(os.Args[0], "serve", sock)
		cmd.Dir = cwd
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for i := 0; i < 100; i++ { // wait for the socket, like a real shim does before printing
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Print("unix://" + sock) // the legacy bootstrap: a bare address
	case "delete":
		record(Record{Method: "delete", Cwd: cwd, Args: os.Args[1:]})
		data, _ := proto.Marshal(&taskv2.DeleteResponse{ExitStatus: 137, ExitedAt: timestamppb.Now()})
		os.Stdout.Write(data)
	default:
		if len(os.Args) == 3 && os.Args[1] == "serve" {
			serve(os.Args[2])
			return
		}
		fmt.Fprintln(os.Stderr, "recordingshim: unknown action", action)
		os.Exit(1)
	}
}

func serve(sock string) {
	// Like Kata's shim, open the log FIFO the caller made in our cwd.
	if f, err := os.OpenFile("log", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(f, "recordingshim: serving")
		f.Close()
	}
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		os.Exit(1)
	}
	s := &service{procs: map[string]*proc{}, done: make(chan struct{})}
	if conn, err := net.Dial("unix", os.Getenv("TTRPC_ADDRESS")); err == nil {
		s.events = eventsapi.NewTTRPCEventsClient(ttrpc.NewClient(conn))
	}
	taskv2.RegisterTTRPCTaskService(srv, s)
	go srv.Serve(context.Background(), l)
	<-s.done
	srv.Close()
	os.Remove(sock)
}

type proc struct {
	exited chan struct{}
	status uint32
	pid    uint32
}

type service struct {
	mu      sync.Mutex
	procs   map[string]*proc
	events  eventsapi.TTRPCEventsService
	done    chan struct{}
	nextPid uint32
	cgroup  string // the sandbox's blkio cgroup, created at the first Create
}

func (s *service) rec(method string, req proto.Message) {
	b, _ := proto.Marshal(req)
	r := Record{Method: method, Request: b}
	if c, ok := req.(*taskv2.CreateTaskRequest); ok {
		r.Spec, _ = os.ReadFile(filepath.Join(c.Bundle, "config.json"))
	}
	record(r)
}

func (s *service) publish(topic string, evt proto.Message) {
	if s.events == nil {
		return
	}
	a, err := typeurl.MarshalAnyToProto(evt)
	if err != nil {
		return
	}
	s.events.Forward(context.Background(), &eventsapi.ForwardRequest{Envelope: &types.Envelope{
		Timestamp: timestamppb.Now(), Namespace: os.Getenv("NAMESPACE"), Topic: topic, Event: a}})
}

func key(id, exec string) string { return id + "/" + exec }

func (s *service) add(id, exec string) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextPid++
	p := &proc{exited: make(chan struct{}), pid: 1000 + s.nextPid}
	s.procs[key(id, exec)] = p
	return p
}

func (s *service) get(id, exec string) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[key(id, exec)]
}

func (s *service) Create(ctx context.Context, r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) {
	s.rec("Create", r)
	// Kata with sandbox_cgroup_only puts the VMM, which does every
	// container's I/O, in the sandbox's cgroup: the one the first spec names.
	if s.cgroup == "" {
		var spec struct {
			Linux struct {
				CgroupsPath string `json:"cgroupsPath"`
			} `json:"linux"`
		}
		data, _ := os.ReadFile(filepath.Join(r.Bundle, "config.json"))
		if json.Unmarshal(data, &spec) == nil && spec.Linux.CgroupsPath != "" {
			s.cgroup = filepath.Join("/sys/fs/cgroup/blkio", spec.Linux.CgroupsPath)
			if err := os.MkdirAll(s.cgroup, 0o755); err != nil {
				return nil, fmt.Errorf("creating the sandbox cgroup: %w", err)
			}
		}
	}
	p := s.add(r.ID, "")
	s.publish("/tasks/create", &eventstypes.TaskCreate{ContainerID: r.ID, Bundle: r.Bundle, Pid: p.pid})
	return &taskv2.CreateTaskResponse{Pid: p.pid}, nil
}

func (s *service) Start(ctx context.Context, r *taskv2.StartRequest) (*taskv2.StartResponse, error) {
	s.rec("Start", r)
	p := s.get(r.ID, r.ExecID)
	if p == nil {
		return nil, fmt.Errorf("no process %s", key(r.ID, r.ExecID))
	}
	return &taskv2.StartResponse{Pid: p.pid}, nil
}

func (s *service) Exec(ctx context.Context, r *taskv2.ExecProcessRequest) (*emptypb.Empty, error) {
	s.rec("Exec", r)
	s.add(r.ID, r.ExecID)
	return &emptypb.Empty{}, nil
}

func (s *service) Kill(ctx context.Context, r *taskv2.KillRequest) (*emptypb.Empty, error) {
	s.rec("Kill", r)
	p := s.get(r.ID, r.ExecID)
	if p == nil {
		return nil, fmt.Errorf("no process %s", key(r.ID, r.ExecID))
	}
	select {
	case <-p.exited:
	default:
		p.status = 128 + r.Signal
		close(p.exited)
		id := r.ID
		if r.ExecID != "" {
			id = r.ExecID
		}
		s.publish("/tasks/exit", &eventstypes.TaskExit{ContainerID: r.ID, ID: id, Pid: p.pid, ExitStatus: p.status, ExitedAt: timestamppb.Now()})
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Wait(ctx context.Context, r *taskv2.WaitRequest) (*taskv2.WaitResponse, error) {
	s.rec("Wait", r)
	p := s.get(r.ID, r.ExecID)
	if p == nil {
		return nil, fmt.Errorf("no process %s", key(r.ID, r.ExecID))
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &taskv2.WaitResponse{ExitStatus: p.status, ExitedAt: timestamppb.Now()}, nil
}

func (s *service) Delete(ctx context.Context, r *taskv2.DeleteRequest) (*taskv2.DeleteResponse, error) {
	if s.cgroup != "" && r.ExecID == "" {
		record(Record{Method: "blkio", Spec: blkioThrottle(s.cgroup)})
	}
	s.rec("Delete", r)
	s.mu.Lock()
	p := s.procs[key(r.ID, r.ExecID)]
	delete(s.procs, key(r.ID, r.ExecID))
	s.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("no process %s", key(r.ID, r.ExecID))
	}
	return &taskv2.DeleteResponse{Pid: p.pid, ExitStatus: p.status, ExitedAt: timestamppb.Now()}, nil
}

func (s *service) State(ctx context.Context, r *taskv2.StateRequest) (*taskv2.StateResponse, error) {
	s.rec("State", r)
	return &taskv2.StateResponse{ID: r.ID, ExecID: r.ExecID}, nil
}

func (s *service) Pids(ctx context.Context, r *taskv2.PidsRequest) (*taskv2.PidsResponse, error) {
	s.rec("Pids", r)
	return &taskv2.PidsResponse{}, nil
}

func (s *service) Pause(ctx context.Context, r *taskv2.PauseRequest) (*emptypb.Empty, error) {
	s.rec("Pause", r)
	return &emptypb.Empty{}, nil
}

func (s *service) Resume(ctx context.Context, r *taskv2.ResumeRequest) (*emptypb.Empty, error) {
	s.rec("Resume", r)
	return &emptypb.Empty{}, nil
}

func (s *service) Checkpoint(ctx context.Context, r *taskv2.CheckpointTaskRequest) (*emptypb.Empty, error) {
	s.rec("Checkpoint", r)
	return &emptypb.Empty{}, nil
}

func (s *service) ResizePty(ctx context.Context, r *taskv2.ResizePtyRequest) (*emptypb.Empty, error) {
	s.rec("ResizePty", r)
	return &emptypb.Empty{}, nil
}

func (s *service) CloseIO(ctx context.Context, r *taskv2.CloseIORequest) (*emptypb.Empty, error) {
	s.rec("CloseIO", r)
	return &emptypb.Empty{}, nil
}

func (s *service) Update(ctx context.Context, r *taskv2.UpdateTaskRequest) (*emptypb.Empty, error) {
	s.rec("Update", r)
	return &emptypb.Empty{}, nil
}

func (s *service) Stats(ctx context.Context, r *taskv2.StatsRequest) (*taskv2.StatsResponse, error) {
	s.rec("Stats", r)
	return &taskv2.StatsResponse{}, nil
}

func (s *service) Connect(ctx context.Context, r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	s.rec("Connect", r)
	return &taskv2.ConnectResponse{ShimPid: uint32(os.Getpid())}, nil
}

func (s *service) Shutdown(ctx context.Context, r *taskv2.ShutdownRequest) (*emptypb.Empty, error) {
	s.rec("Shutdown", r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cgroup != "" {
		record(Record{Method: "blkio-at-shutdown", Spec: blkioThrottle(s.cgroup)})
		for p := s.cgroup; p != "/sys/fs/cgroup/blkio" && os.Remove(p) == nil; p = filepath.Dir(p) {
		}
	}
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	return &emptypb.Empty{}, nil
}

// blkioThrottle reads the sandbox cgroup's v1 throttle files as a JSON map.
func blkioThrottle(dir string) json.RawMessage {
	m := map[string]string{}
	for _, f := range []string{"read_bps_device", "write_bps_device", "read_iops_device", "write_iops_device"} {
		b, _ := os.ReadFile(filepath.Join(dir, "blkio.throttle."+f))
		m[f] = string(b)
	}
	data, _ := json.Marshal(m)
	return data
}
