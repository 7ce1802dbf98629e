package shim_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/podmetrics"
	"github.com/cci-shim/cci-shim/podmetrics/relay"
)

// kataPod is a pod sandbox created through the cci shim with the recording
// stand-in for Kata's shim as its backend.
type kataPod struct {
	t       *testing.T
	id      string
	task    taskv3.TTRPCTaskService
	ctx     context.Context
	records string
}

// startKataPod starts a cci shim for pod id (backend kata, the recording
// shim) and creates and starts its sandbox with the given pod annotations.
func startKataPod(t *testing.T, tmp, bin, evSock, id string, annotations map[string]string) *kataPod {
	t.Helper()
	const ns = "k8s.io"
	cfgPath := filepath.Join(tmp, "cci.toml")
	writeFile(t, cfgPath, "state_dir = \""+filepath.Join(tmp, "state")+"\"\n[rootfs]\nsize_bytes = 33554432\n[throttle]\nrootfs_burst_bytes = 0\n[policy]\nvolume_dir = \""+filepath.Join(tmp, "volumes")+
		"\"\n[backend]\nkind = \"kata\"\nbinary = \""+filepath.Join(bin, "containerd-shim-kata-v2")+"\"\nconfig_path = \""+kataConfigPath+"\"\n")
	bundle := filepath.Join(tmp, "bundle", id[:8])
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	a := map[string]string{"io.kubernetes.cri.container-type": "sandbox", "io.kubernetes.cri.sandbox-id": id,
		"io.kubernetes.cri.sandbox-name": "web", "io.kubernetes.cri.sandbox-namespace": "team-a"}
	for k, v := range annotations {
		a[k] = v
	}
	spec := specs.Spec{Version: specs.Version, Process: &specs.Process{Args: []string{"/pause"}, Cwd: "/"},
		Root: &specs.Root{Path: "rootfs"}, Annotations: a,
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"},
			{Type: "network"}}}}
	specJSON, _ := json.Marshal(spec)
	writeFile(t, filepath.Join(bundle, "config.json"), string(specJSON))
	readFifo(t, filepath.Join(bundle, "log"))

	records := filepath.Join(tmp, id[:8]+".jsonl")
	_, task, cciOpts := startCCIShim(t, bin, tmp, bundle, ns, id, evSock, cfgPath, records)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	t.Cleanup(cancel)
	p := &kataPod{t: t, id: id, task: task, ctx: ctx, records: records}
	rootfs := []*types.Mount{{Type: "ext4", Source: testutil.Ext4Image(t, filepath.Join(tmp, id[:8]+"-rootfs.img")), Options: []string{"loop", "rw"}}}
	mustOK(t, "Create", func() error {
		_, err := p.task.Create(ctx, &taskv3.CreateTaskRequest{ID: id, Bundle: bundle, Rootfs: rootfs, Options: cciOpts})
		return err
	})
	mustOK(t, "Start", func() error { _, err := p.task.Start(ctx, &taskv3.StartRequest{ID: id}); return err })
	return p
}

// calls returns every request of method the backend got, in order.
func (p *kataPod) calls(method string) []record {
	b, _ := os.ReadFile(p.records)
	var out []record
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var r record
		if json.Unmarshal(line, &r) == nil && r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

func (p *kataPod) backendSpec() specs.Spec {
	p.t.Helper()
	creates := p.calls("Create")
	if len(creates) == 0 {
		p.t.Fatal("backend got no Create")
	}
	var s specs.Spec
	if err := json.Unmarshal(creates[0].Spec, &s); err != nil {
		p.t.Fatal(err)
	}
	return s
}

// relayExec returns the backend's Exec of the relay, if any.
func (p *kataPod) relayExec() *taskv2.ExecProcessRequest {
	for _, r := range p.calls("Exec") {
		var e taskv2.ExecProcessRequest
		if proto.Unmarshal(r.Request, &e) == nil && e.ExecID == podmetrics.RelayExecID {
			return &e
		}
	}
	return nil
}

func (p *kataPod) stop() {
	p.t.Helper()
	mustOK(p.t, "Kill", func() error { _, err := p.task.Kill(p.ctx, &taskv3.KillRequest{ID: p.id, Signal: 9}); return err })
	p.task.Wait(p.ctx, &taskv3.WaitRequest{ID: p.id})
	mustOK(p.t, "Delete", func() error { _, err := p.task.Delete(p.ctx, &taskv3.DeleteRequest{ID: p.id}); return err })
	p.task.Shutdown(p.ctx, &taskv3.ShutdownRequest{ID: p.id})
}

// TestPodMetricsKataContract: for a backend whose sandbox owns the pod's
// interface (Kata), the shim mounts the relay read-only into the sandbox
// container, starts it there as an exec of the backend as nobody without
// capabilities, and answers the requests the relay hands it over the exec's
// stdio with the pod's metrics, whose CPU and memory come from the backend's
// Stats. A pod that turns its endpoint off gets neither mount nor exec.
func TestPodMetricsKataContract(t *testing.T) {
	tmp, bin, evSock, _ := kataContractEnv(t, "cci-pmk-", 256)

	p := startKataPod(t, tmp, bin, evSock, criID("pm1"), map[string]string{podmetrics.AnnotationPort: "9300"})
	spec := p.backendSpec()
	i := slices.IndexFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == podmetrics.RelayPath })
	if i < 0 {
		t.Fatalf("no relay mount at %s in the sandbox spec: %+v", podmetrics.RelayPath, spec.Mounts)
	}
	if m := spec.Mounts[i]; m.Source != filepath.Join(bin, podmetrics.RelayBinary) || m.Type != "bind" || !slices.Contains(m.Options, "ro") {
		t.Errorf("relay mount = %+v; want a read-only bind of %s", m, filepath.Join(bin, podmetrics.RelayBinary))
	}
	var e *taskv2.ExecProcessRequest
	if !waitUntil(10*time.Second, func() bool { e = p.relayExec(); return e != nil }) {
		t.Fatalf("backend got no Exec %q; Execs: %d", podmetrics.RelayExecID, len(p.calls("Exec")))
	}
	var proc specs.Process
	if err := json.Unmarshal(e.GetSpec().GetValue(), &proc); err != nil {
		t.Fatal(err)
	}
	if e.ID != p.id || !slices.Equal(proc.Args, []string{podmetrics.RelayPath, "-port", "9300"}) || proc.User.UID != 65534 ||
		!proc.NoNewPrivileges || proc.Capabilities == nil || len(proc.Capabilities.Bounding)+len(proc.Capabilities.Effective) != 0 || proc.Terminal {
		t.Errorf("relay exec in %s: %+v", e.ID, proc)
	}
	started := false
	for _, r := range p.calls("Start") {
		var s taskv2.StartRequest
		started = started || (proto.Unmarshal(r.Request, &s) == nil && s.ExecID == podmetrics.RelayExecID)
	}
	if !started {
		t.Error("the relay exec was never started")
	}

	// Be the relay: a request on the exec's stdout, the answer on its stdin.
	out, err := os.OpenFile(e.Stdout, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in, err := os.OpenFile(e.Stdin, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	statsBefore := len(p.calls("Stats"))
	if err := relay.WriteFrame(out, []byte("GET /metrics HTTP/1.1\r\nHost: 10.0.0.5:9300\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	frame, err := relay.ReadFrame(in, relay.MaxResponse)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(frame)), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `cci_pod_metrics_scrape_error{namespace="team-a",pod="web"}`) {
		t.Errorf("relayed scrape = %d\n%s", resp.StatusCode, body)
	}
	if n := len(p.calls("Stats")) - statsBefore; n < 1 {
		t.Errorf("the scrape asked the backend for Stats %d times; the figures of a VM's containers are the backend's", n)
	}
	p.stop()

	off := startKataPod(t, tmp, bin, evSock, criID("pm2"), map[string]string{podmetrics.AnnotationEnable: "false"})
	if slices.ContainsFunc(off.backendSpec().Mounts, func(m specs.Mount) bool { return m.Destination == podmetrics.RelayPath }) {
		t.Error("relay mounted into a pod that turned its endpoint off")
	}
	time.Sleep(500 * time.Millisecond)
	if off.relayExec() != nil {
		t.Error("relay started in a pod that turned its endpoint off")
	}
	off.stop()
}

// buildRelay compiles the in-sandbox relay (C) into dir beside the shim,
// as make build does.
func buildRelay(t *testing.T, dir string) {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		testutil.Unavailable(t, "no C compiler (Debian packages gcc, libc6-dev)")
	}
	cmd := exec.Command(cc, "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", filepath.Join(dir, podmetrics.RelayBinary), "cmd/cci-podmetrics/relay.c")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the relay: %v\n%s", err, out)
	}
}

// criID is a sandbox id as containerd's CRI makes them: 64 hex digits.
func criID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func waitUntil(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
