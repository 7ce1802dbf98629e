package shim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"github.com/cci-shim/cci-shim/internal/testutil"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

const kataConfigPath = "/etc/kata-containers/configuration-cci.toml"

// fakeEvents is containerd's events endpoint as a shim sees it.
type fakeEvents struct{ ch chan *types.Envelope }

func (f *fakeEvents) Forward(_ context.Context, r *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	f.ch <- r.Envelope
	return &emptypb.Empty{}, nil
}

type record struct {
	Method  string          `json:"method"`
	Request []byte          `json:"request"`
	Cwd     string          `json:"cwd"`
	Env     []string        `json:"env"`
	Stdin   []byte          `json:"stdin"`
	Spec    json.RawMessage `json:"spec"`
}

func buildBinaries(t *testing.T, dir string) {
	t.Helper()
	for out, pkg := range map[string]string{
		"containerd-shim-cci-v2":  "./cmd/containerd-shim-cci-v2",
		"containerd-shim-kata-v2": "./tests/recordingshim",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = ".."
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, b)
		}
	}
	buildRelay(t, dir) // the in-sandbox relay, mounted into Kata sandboxes (R27; shim/podmetrics_contract_test.go)
}

// kataContractEnv makes a short temp dir (unix socket paths are limited),
// builds the binaries into <tmp>/bin and serves a containerd events
// endpoint at <tmp>/ev.sock that records what it gets in events.
func kataContractEnv(t *testing.T, prefix string, buffer int) (tmp, bin, evSock string, events *fakeEvents) {
	testutil.RequireRoot(t, "the shim mounts the pod's /dev/shm tmpfs")
	tmp, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	bin = filepath.Join(tmp, "bin")
	buildBinaries(t, bin)
	evSock = filepath.Join(tmp, "ev.sock")
	l, err := net.Listen("unix", evSock)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ttrpc.NewServer()
	events = &fakeEvents{ch: make(chan *types.Envelope, buffer)}
	eventsapi.RegisterTTRPCEventsService(srv, events)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return tmp, bin, evSock, events
}

// startCCIShim runs the cci shim's start subcommand in bundle as containerd
// 2.4 does (bootstrap parameters on stdin, the node config as CRI's runtime
// options) with the recording backend writing to recordFile, and connects
// to the shim. It returns the shim's socket, its task client and the
// runtime options to pass on Create.
func startCCIShim(t *testing.T, bin, tmp, bundle, ns, id, evSock, cfgPath, recordFile string) (string, taskv3.TTRPCTaskService, *anypb.Any) {
	t.Helper()
	socketDir := filepath.Join(tmp, "s")
	os.MkdirAll(socketDir, 0o700)
	params := &bootapi.BootstrapParams{InstanceID: id, Namespace: ns, ContainerdGrpcAddress: filepath.Join(tmp, "grpc.sock"),
		ContainerdTtrpcAddress: evSock, ContainerdBinary: "/bin/true", SocketDir: &socketDir}
	cciOpts, _ := typeurl.MarshalAnyToProto(&runtimeoptions.Options{TypeUrl: "cci", ConfigPath: cfgPath})
	params.AddExtension(cciOpts)
	in, _ := proto.Marshal(params)
	start := exec.Command(filepath.Join(bin, "containerd-shim-cci-v2"), "-namespace", ns, "-address", params.ContainerdGrpcAddress,
		"-publish-binary", "/bin/true", "-id", id, "start")
	start.Dir = bundle
	start.Stdin = bytes.NewReader(in)
	start.Env = append(os.Environ(), "TTRPC_ADDRESS="+evSock, "RECORD_FILE="+recordFile)
	out, err := start.Output()
	if err != nil {
		t.Fatalf("cci start: %v: %s", err, errOutput(err))
	}
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(out, &res); err != nil || res.Version != 3 {
		t.Fatalf("start printed %q: %v", out, err)
	}
	address := strings.TrimPrefix(res.Address, "unix://")
	conn, err := net.Dial("unix", address)
	if err != nil {
		t.Fatal(err)
	}
	return address, taskv3.NewTTRPCTaskClient(ttrpc.NewClient(conn)), cciOpts
}

// TestKataAdapterContract drives the cci shim the way containerd does, with a
// recording stand-in for Kata's shim as the backend, and checks what reaches
// the backend: how it was started, the bundle and spec it got, the runtime
// options, the interposed stdio, and that its events come back to containerd.
func TestKataAdapterContract(t *testing.T) {
	tmp, bin, evSock, events := kataContractEnv(t, "cci-kata-", 64)

	state := filepath.Join(tmp, "state")
	cfgPath := filepath.Join(tmp, "cci.toml")
	writeFile(t, cfgPath, "state_dir = \""+state+"\"\n[rootfs]\nsize_bytes = 33554432\n[throttle]\nrootfs_burst_bytes = 0\n[policy]\nvolume_dir = \""+filepath.Join(tmp, "volumes")+"\"\n[backend]\nkind = \"kata\"\nbinary = \""+
		filepath.Join(bin, "containerd-shim-kata-v2")+"\"\nconfig_path = \""+kataConfigPath+"\"\n")
	recordFile := filepath.Join(tmp, "record.jsonl")

	// containerd's bundle for the pod sandbox, with its shim log FIFO.
	const ns, pod = "k8s.io", "5f0c2fbf8e0e4c3b9b1f7f2d3c4b5a69788766554433221100ffeeddccbbaa99"
	bundle := filepath.Join(tmp, "bundle", pod)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	spec := specs.Spec{Version: specs.Version, Process: &specs.Process{Args: []string{"/pause"}, Cwd: "/"},
		Root: &specs.Root{Path: "rootfs"}, Annotations: map[string]string{
			"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": pod,
			"io.kubernetes.cri.sandbox-name": "pod1", "io.kubernetes.cri.sandbox-namespace": "default",
			"io.kubernetes.cri.sandbox-uid": "6d7d5c9e-1f1a-4a8b-9c3e-2b7f0e5d4a11",
			// 1.5 cores and 3 GiB as kubelet sends them: a valid size, so the
			// VM gets 2 vCPUs, 3072 MiB.
			"io.kubernetes.cri.sandbox-cpu-quota": "150000", "io.kubernetes.cri.sandbox-cpu-period": "100000",
			"io.kubernetes.cri.sandbox-memory": "3221225472"},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"},
			{Type: "network"}}}}
	specJSON, _ := json.Marshal(spec)
	writeFile(t, filepath.Join(bundle, "config.json"), string(specJSON))
	shimLog := readFifo(t, filepath.Join(bundle, "log"))

	// start, as containerd 2.4 runs it.
	address, task, cciOpts := startCCIShim(t, bin, tmp, bundle, ns, pod, evSock, cfgPath, recordFile)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()

	// A container's stdout, as containerd's FIFO.
	frontStdout := filepath.Join(tmp, "front-stdout")
	readFifo(t, frontStdout)
	rootfs := []*types.Mount{{Type: "ext4", Source: testutil.Ext4Image(t, filepath.Join(tmp, "rootfs.img")), Options: []string{"loop", "rw"}}}
	if _, err := task.Create(ctx, &taskv3.CreateTaskRequest{ID: pod, Bundle: bundle, Rootfs: rootfs, Stdout: frontStdout, Options: cciOpts}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	cr, err := task.Connect(ctx, &taskv3.ConnectRequest{ID: pod})
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, "Start", func() error { _, err := task.Start(ctx, &taskv3.StartRequest{ID: pod}); return err })
	mustOK(t, "Exec", func() error {
		pj, _ := json.Marshal(&specs.Process{Args: []string{"/bin/true"}, Cwd: "/"})
		proc := &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: pj}
		_, err := task.Exec(ctx, &taskv3.ExecProcessRequest{ID: pod, ExecID: "e1", Spec: proc})
		return err
	})
	mustOK(t, "Kill exec", func() error {
		_, err := task.Kill(ctx, &taskv3.KillRequest{ID: pod, ExecID: "e1", Signal: 9})
		return err
	})
	w, err := task.Wait(ctx, &taskv3.WaitRequest{ID: pod, ExecID: "e1"})
	if err != nil || w.ExitStatus != 137 {
		t.Fatalf("Wait exec = %v, %v; want status 137", w, err)
	}
	mustOK(t, "Delete exec", func() error { _, err := task.Delete(ctx, &taskv3.DeleteRequest{ID: pod, ExecID: "e1"}); return err })
	mustOK(t, "Kill", func() error { _, err := task.Kill(ctx, &taskv3.KillRequest{ID: pod, Signal: 15}); return err })
	if w, err := task.Wait(ctx, &taskv3.WaitRequest{ID: pod}); err != nil || w.ExitStatus != 143 {
		t.Fatalf("Wait = %v, %v; want status 143", w, err)
	}
	mustOK(t, "Delete", func() error { _, err := task.Delete(ctx, &taskv3.DeleteRequest{ID: pod}); return err })
	task.Shutdown(ctx, &taskv3.ShutdownRequest{ID: pod})

	// The relayed events, in order, with the exit last.
	var topics []string
	for len(topics) < 3 {
		select {
		case e := <-events.ch:
			topics = append(topics, e.Topic)
		case <-time.After(10 * time.Second):
			t.Fatalf("events relayed to containerd: %v; want create and two exits", topics)
		}
	}
	if strings.Join(topics, " ") != "/tasks/create /tasks/exit /tasks/exit" {
		t.Errorf("relayed topics = %v", topics)
	}

	// Both shims are gone, with their state and sockets.
	if !waitGone(int(cr.ShimPid), 10*time.Second) {
		t.Errorf("cci shim %d still runs after Shutdown", cr.ShimPid)
	}
	recs := readRecords(t, recordFile)
	backendBundle := filepath.Join(state, ns, pod, "bundles", pod)
	startRec := recs["start"]
	if startRec == nil {
		t.Fatalf("backend never started; records: %v", keys(recs))
	}
	// The backend runs in a directory of its own, not in the first
	// container's bundle, which goes with that container.
	if backendDir := filepath.Join(state, ns, pod, "backend"); startRec.Cwd != backendDir {
		t.Errorf("backend started in %s, want its own dir %s", startRec.Cwd, backendDir)
	}
	if !contains(startRec.Env, "TTRPC_ADDRESS="+address) {
		t.Errorf("backend's TTRPC_ADDRESS does not point at the cci shim's event relay")
	}
	var bp bootapi.BootstrapParams
	if err := proto.Unmarshal(startRec.Stdin, &bp); err != nil || bp.InstanceID != pod || bp.Namespace != ns {
		t.Errorf("backend bootstrap params = %v (%v)", &bp, err)
	}
	var ropts runtimeoptions.Options
	if found, err := bp.FindExtension(&ropts); !found || err != nil || ropts.ConfigPath != kataConfigPath {
		t.Errorf("backend start options ConfigPath = %q (found %v, %v), want %q", ropts.ConfigPath, found, err, kataConfigPath)
	}
	var create taskv2.CreateTaskRequest
	if recs["Create"] == nil || proto.Unmarshal(recs["Create"].Request, &create) != nil {
		t.Fatal("backend got no Create")
	}
	if create.Bundle != backendBundle {
		t.Errorf("Create bundle = %s, want %s", create.Bundle, backendBundle)
	}
	var backendSpec specs.Spec
	if err := json.Unmarshal(recs["Create"].Spec, &backendSpec); err != nil {
		t.Fatalf("spec the backend got: %v", err)
	}
	if v, m := backendSpec.Annotations["io.katacontainers.config.hypervisor.default_vcpus"], backendSpec.Annotations["io.katacontainers.config.hypervisor.default_memory"]; v != "2" || m != "3072" {
		t.Errorf("Kata VM size annotations = %q vCPUs, %q MiB; want 2, 3072 (pod of 1.5 cores, 3 GiB)", v, m)
	}
	if create.Stdout == frontStdout || !strings.HasPrefix(create.Stdout, filepath.Join(state, ns, pod, "io")) {
		t.Errorf("Create stdout = %s: stdio must be interposed under the pod state dir", create.Stdout)
	}
	if err := typeurl.UnmarshalTo(create.Options, &ropts); err != nil || ropts.ConfigPath != kataConfigPath {
		t.Errorf("Create options ConfigPath = %q (%v), want %q: the cci runtime's options must not reach Kata", ropts.ConfigPath, err, kataConfigPath)
	}
	// R8 under a VM: the rootfs limits are in the sandbox's host cgroup,
	// where the VMM doing every container's I/O runs (Traits: sandbox
	// placement), not in a container spec the guest would apply.
	var throttle map[string]string
	if recs["blkio"] == nil || json.Unmarshal(recs["blkio"].Spec, &throttle) != nil {
		t.Fatal("the stand-in recorded no sandbox cgroup")
	}
	for _, f := range []string{"read_bps_device", "write_bps_device"} {
		if !strings.Contains(throttle[f], " 6000000") {
			t.Errorf("sandbox cgroup blkio.throttle.%s = %q, want the rootfs device at 6000000", f, throttle[f])
		}
	}
	for _, f := range []string{"read_iops_device", "write_iops_device"} {
		if !strings.Contains(throttle[f], " 1000") {
			t.Errorf("sandbox cgroup blkio.throttle.%s = %q, want the rootfs device at 1000", f, throttle[f])
		}
	}
	// The container gone, its device's limits go too (the device number is
	// reused by the next pod).
	var after map[string]string
	if recs["blkio-at-shutdown"] == nil || json.Unmarshal(recs["blkio-at-shutdown"].Spec, &after) != nil {
		t.Fatal("the stand-in recorded no sandbox cgroup at shutdown")
	}
	for f, v := range after {
		if strings.TrimSpace(v) != "" {
			t.Errorf("sandbox cgroup blkio.throttle.%s = %q after the container was deleted, want no limit", f, v)
		}
	}
	if backendSpec.Linux != nil && backendSpec.Linux.Resources != nil && backendSpec.Linux.Resources.BlockIO != nil {
		t.Errorf("the rootfs throttle reached the guest's spec: %+v", backendSpec.Linux.Resources.BlockIO)
	}
	for _, m := range []string{"Exec", "Kill", "Wait", "Delete", "Shutdown"} {
		if recs[m] == nil {
			t.Errorf("backend never got %s", m)
		}
	}
	if _, err := os.Stat(filepath.Join(state, ns, pod)); !os.IsNotExist(err) {
		t.Errorf("pod state dir left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "volumes", ns, pod)); !os.IsNotExist(err) {
		t.Errorf("pod volume dir left behind: %v", err)
	}
	if _, err := os.Stat(address); !os.IsNotExist(err) {
		t.Errorf("cci shim socket left behind")
	}
	if got := shimLog(); !strings.Contains(got, "recordingshim: serving") {
		t.Errorf("backend log not relayed into the shim log:\n%s", got)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readFifo makes a FIFO and reads it in the background, as containerd does
// with a shim's log and stdio; the returned func returns what was read.
func readFifo(t *testing.T, path string) func() string {
	t.Helper()
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0) // RDWR: never blocks, never sees EOF early
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			buf.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "recordingshim: serving") {
				return
			}
		}
	}()
	return func() string {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		return buf.String()
	}
}

func readRecords(t *testing.T, path string) map[string]*record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]*record{}
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		if recs[r.Method] == nil {
			recs[r.Method] = &r
		}
	}
	return recs
}

func mustOK(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func waitGone(pid int, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return true
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && bytes.Contains(b, []byte(") Z ")) {
			return true
		}
	}
	return false
}

func errOutput(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func keys(m map[string]*record) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestKataBackendDies: the backend shim in a process of its own (Kata's)
// dies under a running pod. The cci shim notices the connection drop and
// exits, removing its socket, so that containerd cleans the pod up through
// the delete subcommand, the path a crash of the cci shim takes.
func TestKataBackendDies(t *testing.T) {
	tmp, bin, evSock, _ := kataContractEnv(t, "cci-kdie-", 64)

	p := startKataPod(t, tmp, bin, evSock, criID("dies"), nil)
	cr, err := p.task.Connect(p.ctx, &taskv3.ConnectRequest{ID: p.id})
	if err != nil {
		t.Fatal(err)
	}
	backend := pidsOf(filepath.Join(bin, "containerd-shim-kata-v2"))
	if len(backend) != 1 {
		t.Fatalf("backend processes: %v, want 1", backend)
	}
	syscall.Kill(backend[0], syscall.SIGKILL)
	if !waitGone(int(cr.ShimPid), 10*time.Second) {
		t.Fatalf("cci shim %d still runs 10 s after its backend died", cr.ShimPid)
	}
}

// pidsOf lists the processes running the binary at path.
func pidsOf(path string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == path {
			out = append(out, pid)
		}
	}
	return out
}
