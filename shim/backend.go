package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/sys/reaper"
	"github.com/containerd/containerd/v2/version"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"
)

// launch describes how to start (or clean up) a backend shim: the same
// bootstrap containerd itself would hand it, except that its events come to
// this shim (TTRPCAddress), which relays them to containerd.
type launch struct {
	binary           string
	namespace        string
	id               string // the first container of the pod
	bundle           string // the backend's own bundle for id
	grpcAddress      string // containerd's
	ttrpcAddress     string // ours: the event relay
	containerdBinary string
	socketDir        string
	debug            bool
	options          *anypb.Any
}

func (l *launch) command(ctx context.Context, action string) *exec.Cmd {
	args := []string{"-namespace", l.namespace, "-address", l.grpcAddress,
		"-publish-binary", l.containerdBinary, "-id", l.id}
	if action == "delete" {
		args = append(args, "-bundle", l.bundle)
	}
	if l.debug {
		args = append(args, "-debug")
	}
	cmd := exec.CommandContext(ctx, l.binary, append(args, action)...)
	cmd.Dir = l.bundle
	env := make([]string, 0, len(os.Environ())+4)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "TTRPC_ADDRESS=") && !strings.HasPrefix(e, "GRPC_ADDRESS=") && !strings.HasPrefix(e, "NAMESPACE=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "TTRPC_ADDRESS="+l.ttrpcAddress, "GRPC_ADDRESS="+l.grpcAddress, "NAMESPACE="+l.namespace)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// backendShim is the running backend shim of the pod and its Task client.
type backendShim struct {
	// inProcess: the task service runs in this shim (startInProcessBackend)
	inProcess bool
	proc      procID
	address   string
	version   int32
	conn      *ttrpc.Client
	task      *taskClient
	logs      io.Closer
	logDone   chan struct{}
}

// startBackend runs the backend's start subcommand in its own directory
// (l.bundle, holding a config.json the backend reads for the pod's grouping
// annotations), records it through recordStarted as soon as its address is
// known — before anything else can fail — connects to it and learns its
// process identity. onClose runs if the connection drops (the backend died).
// On error nothing of the backend is left running.
func startBackend(ctx context.Context, l *launch, recordStarted func(address string) error, onClose func()) (_ *backendShim, retErr error) {
	b := &backendShim{logDone: make(chan struct{})}
	// The backend opens "log" in its working directory and fails without it;
	// containerd does the same for the shims it starts. Its lines go to our
	// own log, which containerd reads.
	logs, err := fifo.OpenFifo(context.WithoutCancel(ctx), filepath.Join(l.bundle, "log"),
		unix.O_RDONLY|unix.O_CREAT|unix.O_NONBLOCK, 0o700)
	if err != nil {
		return nil, fmt.Errorf("creating backend log fifo: %w", err)
	}
	b.logs = logs
	go func() {
		defer close(b.logDone)
		io.Copy(os.Stderr, logs)
	}()
	defer func() {
		if retErr != nil {
			b.logs.Close()
		}
	}()

	params := &bootapi.BootstrapParams{
		InstanceID:             l.id,
		Namespace:              l.namespace,
		LogLevel:               bootapi.LogLevel_LOG_LEVEL_INFO,
		ContainerdVersion:      version.Version,
		ContainerdGrpcAddress:  l.grpcAddress,
		ContainerdTtrpcAddress: l.ttrpcAddress,
		ContainerdBinary:       l.containerdBinary,
	}
	if l.debug {
		params.LogLevel = bootapi.LogLevel_LOG_LEVEL_DEBUG
	}
	if l.socketDir != "" {
		params.SocketDir = &l.socketDir
	}
	if l.options != nil {
		if err := params.AddExtension(l.options); err != nil {
			return nil, fmt.Errorf("adding runtime options: %w", err)
		}
	}
	in, err := proto.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("marshaling bootstrap params: %w", err)
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := l.command(startCtx, "start")
	cmd.Stdin = bytes.NewReader(in)
	out, errOut, err := runCommand(cmd)
	if err != nil {
		killOrphans(ctx, l.binary)
		return nil, fmt.Errorf("backend %s start: %w: %s", filepath.Base(l.binary), err, bytes.TrimSpace(errOut))
	}
	res, err := parseStartResponse(out)
	if err != nil {
		killOrphans(ctx, l.binary)
		return nil, fmt.Errorf("backend %s start: %w", filepath.Base(l.binary), err)
	}
	b.address, b.version = res.Address, res.Version
	if err := recordStarted(b.address); err != nil {
		killOrphans(ctx, l.binary)
		removeSocket(b.address)
		return nil, err
	}
	defer func() {
		if retErr != nil {
			// Started but not usable: the daemon it spawned is our child
			// (we are its subreaper) even though we never learnt its pid.
			if b.proc.Pid > 0 {
				b.proc.stop(ctx, 0)
			} else {
				killOrphans(ctx, l.binary)
			}
			removeSocket(b.address)
		}
	}()
	if !strings.EqualFold(res.Protocol, "ttrpc") {
		return nil, fmt.Errorf("backend %s speaks %q: only ttrpc is supported", filepath.Base(l.binary), res.Protocol)
	}
	conn, err := shim.Connect(res.Address, shim.AnonDialer)
	if err != nil {
		return nil, fmt.Errorf("connecting to backend at %s: %w", res.Address, err)
	}
	if pid, err := peerPid(conn); err == nil {
		b.proc, _ = identify(pid)
	}
	b.conn = ttrpc.NewClient(conn, ttrpc.WithOnClose(onClose))
	b.task = newTaskClient(b.conn, b.version)
	cr, err := b.task.Connect(ctx, &taskv3.ConnectRequest{ID: l.id})
	if err != nil {
		b.conn.Close()
		return nil, fmt.Errorf("connecting to backend task service: %w", err)
	}
	if b.proc.Pid == 0 {
		if b.proc, err = identify(int(cr.ShimPid)); err != nil {
			b.conn.Close()
			return nil, fmt.Errorf("backend shim pid %d: %w", cr.ShimPid, err)
		}
	}
	return b, nil
}

// peerPid returns the pid of the process at the other end of a unix socket.
func peerPid(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return int(cred.Pid), nil
}

// killOrphans kills the processes running binary whose parent is this shim:
// a backend daemon whose start went wrong after it was spawned (we are the
// subreaper of what our children leave behind).
func killOrphans(ctx context.Context, binary string) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	if resolved, err := filepath.EvalSymlinks(binary); err == nil {
		binary = resolved
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		fields, err := statFields(b)
		if err != nil || len(fields) < 2 || fields[1] != strconv.Itoa(self) {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err != nil || exe != binary {
			continue
		}
		if p, err := identify(pid); err == nil {
			log.G(ctx).WithField("pid", pid).Warn("killing backend shim left by a failed start")
			p.stop(ctx, 0)
		}
	}
}

// backendStopGrace is how long the backend gets to exit after Shutdown.
const backendStopGrace = 5 * time.Second

// stop asks the backend to shut down, waits for its process to go (killing
// it after a grace period) and removes its socket. Every wait is bounded.
func (b *backendShim) stop(ctx context.Context, id string) {
	// An in-process runc task service has no process to end, and its
	// Shutdown would run the callbacks it registered for the socket of the
	// shim it thinks it is: this one's.
	if !b.inProcess {
		sctx, cancel := context.WithTimeout(ctx, backendStopGrace)
		_, err := b.task.Shutdown(sctx, &taskv3.ShutdownRequest{ID: id, Now: true})
		cancel()
		if err != nil && !errors.Is(err, ttrpc.ErrClosed) {
			log.G(ctx).WithError(err).Debug("backend shutdown")
		}
	}
	b.proc.stop(ctx, backendStopGrace)
	b.conn.Close()
	removeSocket(b.address)
	b.logs.Close()
	select {
	case <-b.logDone:
	case <-time.After(time.Second):
	}
}

// deleteBackend runs the backend's delete subcommand for one container: the
// cleanup containerd does for a dead shim, which we do for our backend when
// our own shim died.
func deleteBackend(ctx context.Context, l *launch) (*taskv3.DeleteResponse, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, errOut, err := runCommand(l.command(dctx, "delete"))
	if err != nil {
		return nil, fmt.Errorf("backend %s delete: %w: %s", filepath.Base(l.binary), err, bytes.TrimSpace(errOut))
	}
	var resp taskv3.DeleteResponse
	if err := proto.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("decoding backend delete response: %w", err)
	}
	return &resp, nil
}

// runCommand runs cmd to completion through containerd's reaper: the shim
// reaps every child on SIGCHLD, so a plain cmd.Wait would lose the status.
func runCommand(cmd *exec.Cmd) (stdout, stderr []byte, err error) {
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	errR, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	ec, err := reaper.Default.Start(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	var out, errb bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(&out, outR) }()
	go func() { defer wg.Done(); io.Copy(&errb, errR) }()
	wg.Wait()
	status, err := reaper.Default.Wait(cmd, ec)
	if err == nil && status != 0 {
		err = fmt.Errorf("exit status %d", status)
	}
	return out.Bytes(), errb.Bytes(), err
}

// parseStartResponse accepts what shims print on start: a protobuf
// BootstrapResult (containerd 2.4+ shims), JSON (2.0–2.3) or a bare address
// (older shims, Kata among them; task API v2 over ttrpc).
func parseStartResponse(out []byte) (*bootapi.BootstrapResult, error) {
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(out, &res); err == nil && res.Address != "" && res.Protocol != "" {
		return &res, nil
	}
	trimmed := bytes.TrimSpace(out)
	if len(trimmed) == 0 {
		return nil, errors.New("backend printed no address")
	}
	res = bootapi.BootstrapResult{}
	if err := json.Unmarshal(trimmed, &res); err == nil && res.Version >= 2 && res.Address != "" {
		if res.Protocol == "" {
			res.Protocol = "ttrpc"
		}
		return &res, nil
	}
	return &bootapi.BootstrapResult{Address: string(trimmed), Protocol: "ttrpc", Version: 2}, nil
}

func removeSocket(address string) {
	if strings.HasPrefix(address, "unix://") {
		shim.RemoveSocket(address)
	}
}

// runOutput runs cmd through the reaper and returns its combined output, for
// leaves that run helpers (mkfs.ext4) from inside the shim.
func runOutput(cmd *exec.Cmd) ([]byte, error) {
	out, errOut, err := runCommand(cmd)
	return append(out, errOut...), err
}
