package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/internal/crictl"
	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestAgentMetricsInPrometheus runs a pod with crictl, the node agent's
// serve, and a real Prometheus scraping it, and asks Prometheus what an
// operator would: the pod by its Kubernetes name, its container's stdout
// throttle and rootfs limits, with the pause container not listed, and the
// agent's own build, Go and process metrics.
func TestAgentMetricsInPrometheus(t *testing.T) {
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		testutil.Unavailable(t, "prometheus (Debian package prometheus) is not installed")
	}
	env := startEnv(t, true)
	agentBin := filepath.Join(env.BinDir, "cci-agent")
	if _, err := os.Stat(agentBin); err != nil {
		t.Fatalf("%s: %v (make build)", agentBin, err)
	}
	bin, err := crictl.Find(env.ToolsDir)
	if err != nil {
		testutil.Unavailable(t, "%v", err)
	}
	cri, err := crictl.New(bin, env.Address, env.Dir)
	if err != nil {
		t.Fatal(err)
	}

	pod := crictl.Pod{Metadata: crictl.Metadata{Name: "web-prom", Namespace: "shop", UID: podUID("web-prom")},
		LogDirectory: filepath.Join(env.Dir, "pod-logs")}
	podID, err := cri.RunPod(pod, e2eenv.CRIHandlerCCI)
	if err != nil {
		t.Fatalf("%v\n%s", err, env.ContainerdLog())
	}
	t.Cleanup(func() { cri.RemovePod(podID) })
	ctrID, err := cri.StartContainer(podID, pod, crictl.Container{Metadata: crictl.Metadata{Name: "app"}, Image: crictl.Image{Image: env.Image},
		Command: []string{"sh", "-c", "while :; do echo hello from app; sleep 0.1; done"}, LogPath: "app.log"})
	if err != nil {
		t.Fatal(err)
	}

	agentAddr, promAddr := freeAddr(t), freeAddr(t)
	agentLog := filepath.Join(env.Dir, "agent.log")
	start(t, agentLog, []string{"PATH=" + env.ToolsDir + ":" + os.Getenv("PATH")}, agentBin,
		"--config", env.NodeConfigPath, "--containerd-config", env.ConfigPath, "serve", "--listen", agentAddr)
	promDir := filepath.Join(env.Dir, "prometheus")
	if err := os.MkdirAll(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	promCfg := filepath.Join(promDir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: cci-agent
    static_configs:
      - targets: [%q]
`, agentAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, filepath.Join(promDir, "prometheus.log"), nil, prometheus, "--config.file="+promCfg,
		"--storage.tsdb.path="+filepath.Join(promDir, "data"), "--web.listen-address="+promAddr)

	// The pod, by name.
	info := waitQuery(t, promAddr, `cci_pod_info{namespace="shop",pod="web-prom"}`, 1)
	if l := info[0].Metric; l["uid"] != podUID("web-prom") || l["sandbox_id"] != podID || l["containerd_namespace"] != e2eenv.CRINamespace || l["job"] != "cci-agent" {
		t.Errorf("cci_pod_info labels %v", l)
	}
	// Its one container (the pause container is the pod, not a container), with stdout flowing.
	stdio := waitQuery(t, promAddr, `cci_container_stdio_forwarded_bytes_total{namespace="shop",pod="web-prom"} > 0`, 1)
	if l := stdio[0].Metric; l["container"] != "app" || l["id"] != ctrID || l["uid"] != podUID("web-prom") {
		t.Errorf("stdio series labels %v", l)
	}
	limit := waitQuery(t, promAddr, `cci_container_stdio_limit_bytes_per_second{pod="web-prom",container="app"}`, 1)
	if limit[0].value(t) != 1e6 {
		t.Errorf("stdio limit %v, want the node's 1000000", limit[0].Value)
	}
	rootfs := waitQuery(t, promAddr, `cci_container_rootfs_limit_bytes_per_second{pod="web-prom",container="app"}`, 2)
	for _, s := range rootfs {
		if s.value(t) != 6e6 {
			t.Errorf("rootfs %s limit %v, want 6000000", s.Metric["direction"], s.Value)
		}
	}
	// The rootfs device's I/O, from the counters the shim reads for the
	// stats file: the container loaded busybox from its device.
	waitQuery(t, promAddr, `cci_container_rootfs_io_bytes_total{pod="web-prom",container="app",direction="read"} > 0`, 1)
	waitQuery(t, promAddr, `cci_container_rootfs_io_operations_total{pod="web-prom",container="app",direction="read"} > 0`, 1)
	// Every check has exactly one status; WARN is not ok.
	for _, s := range waitQuery(t, promAddr, `sum by (check) (cci_node_check_status)`, -1) {
		if s.value(t) != 1 {
			t.Errorf("check %s has %v statuses", s.Metric["check"], s.Value)
		}
	}
	for _, s := range waitQuery(t, promAddr, `cci_node_check_ok * on(check) cci_node_check_status{status="WARN"}`, -1) {
		if s.value(t) != 0 {
			t.Errorf("check %s is WARN but counted ok", s.Metric["check"])
		}
	}
	for _, q := range []string{`cci_build_info{job="cci-agent"}`, `go_goroutines{job="cci-agent"}`, `process_resident_memory_bytes{job="cci-agent"}`, `up{job="cci-agent"} == 1`} {
		waitQuery(t, promAddr, q, 1)
	}
	if log, _ := os.ReadFile(agentLog); !strings.Contains(string(log), "cci-agent serving") || !strings.Contains(string(log), "listen="+agentAddr) ||
		!strings.Contains(string(log), "config="+env.NodeConfigPath) {
		t.Errorf("the agent did not log its start:\n%s", log)
	}
}

// freeAddr is a 127.0.0.1 address with a port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs a server until the test ends, logging to logPath.
func start(t *testing.T, logPath string, env []string, name string, args ...string) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s:\n%s", filepath.Base(logPath), tail(string(b), 30))
		}
	})
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s sample) value(t *testing.T) float64 {
	t.Helper()
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatalf("value %v: %v", s.Value, err)
	}
	return v
}

// waitQuery runs an instant PromQL query until it returns n series (any
// number but zero for n < 0), for up to a minute.
func waitQuery(t *testing.T, addr, query string, n int) []sample {
	t.Helper()
	var last string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/api/v1/query?query="+url.QueryEscape(query), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			last = err.Error()
			continue
		}
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []sample `json:"result"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		cancel()
		if err != nil || r.Status != "success" {
			last = fmt.Sprintf("%v %s %s", err, r.Status, r.Error)
			continue
		}
		if (n < 0 && len(r.Data.Result) > 0) || len(r.Data.Result) == n {
			return r.Data.Result
		}
		last = fmt.Sprintf("%d series: %v", len(r.Data.Result), r.Data.Result)
	}
	t.Fatalf("PromQL %s: want %d series; last: %s", query, n, last)
	return nil
}
