package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/podmetrics"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// metricsPod is a CRI pod of the metrics tests, with its IP and sandbox pid.
type metricsPod struct {
	*criPod
	name string
	ip   string
	pid  int // the sandbox (pause) process: /proc/<pid>/ns/net is the pod's netns
	app  string
}

// runMetricsPod runs a pod whose "app" container writes 6 MB to its rootfs
// with direct I/O (through the rootfs throttle: a second at 6 MB/s) and a
// line a second to stdout (through the stdout throttle).
func runMetricsPod(ctx context.Context, t *testing.T, env *e2eenv.Env, name string, annotations map[string]string) *metricsPod {
	t.Helper()
	p := &metricsPod{criPod: mustRunPod(ctx, t, env, podConfig(env, name, annotations)), name: name}
	p.app = p.mustStart(ctx, t, containerConfig(env, "app",
		"dd if=/dev/zero of=/rootfs-data bs=1M count=6 oflag=direct 2>/dev/null; while :; do echo tick; sleep 1; done"))
	p.ip, p.pid = sandboxAddress(ctx, t, p.criPod)
	return p
}

// fetch GETs url from inside the client pod with busybox wget (whose -T
// crashes in Debian's busybox-static 1.35; ExecSync bounds it), as another
// pod of the tenant would. It returns the body, or the error wget printed.
func fetch(ctx context.Context, t *testing.T, client *criPod, id, url string) (string, error) {
	t.Helper()
	r, err := client.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"wget", "-q", "-O-", url}, Timeout: 20})
	if err != nil {
		t.Fatalf("ExecSync wget %s: %v", url, err)
	}
	if r.ExitCode != 0 {
		return "", fmt.Errorf("wget %s: exit %d: %s", url, r.ExitCode, strings.TrimSpace(string(r.Stderr)))
	}
	return string(r.Stdout), nil
}

// series returns the value of the sample whose line starts with prefix
// (metric name and labels as exposed, e.g. `x{a="b"}`).
func series(body, prefix string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// promtoolCheck runs `promtool check metrics` on an exposition.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testutil.Unavailable(t, "promtool not found (Debian package prometheus; scripts/deps.sh installs it)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// listeningPorts returns the TCP ports in LISTEN state in the network
// namespace whose /proc/net dir is given.
func listeningPorts(t *testing.T, procNet string) map[int]bool {
	t.Helper()
	ports := map[int]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(procNet, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			_, port, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseInt(port, 16, 32); err == nil {
				ports[int(p)] = true
			}
		}
	}
	return ports
}

// TestPodMetrics: every pod serves its own metrics at <pod IP>:19100
// inside the pod network and nowhere on the host; the annotations move or
// disable the endpoint; bad values and taken ports are refused (R27).
func TestPodMetrics(t *testing.T) {
	// No start burst: the rootfs throttle holds from the first byte, so
	// the app's writes show its effect.
	env := startEnv(t, true, "[throttle]\nrootfs_burst_bytes = 0\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	a := runMetricsPod(ctx, t, env, "pm-a", nil)
	b := runMetricsPod(ctx, t, env, "pm-b", map[string]string{podmetrics.AnnotationPort: "9200"})
	c := runMetricsPod(ctx, t, env, "pm-c", map[string]string{podmetrics.AnnotationEnable: "false"})
	client := mustRunPod(ctx, t, env, podConfig(env, "pm-client", nil))
	clientID := client.mustStart(ctx, t, sleeper(env, "client"))
	time.Sleep(3 * time.Second) // the apps' dd (1 s at 6 MB/s) and a few ticks
	// The endpoint's cost before anybody scraped: pm-a's shim serves it,
	// pm-c's does not.
	idleA, idleC := shimPSS(t, env, a.id), shimPSS(t, env, c.id)

	t.Run("served in the pod network", func(t *testing.T) {
		body, err := fetch(ctx, t, client, clientID, "http://"+a.ip+":19100/metrics")
		if err != nil {
			t.Fatalf("GET %s:19100/metrics from another pod: %v", a.ip, err)
		}
		promtoolCheck(t, body)
		app := `{container="app",namespace="default",pod="pm-a"}`
		for _, want := range []struct {
			series string
			min    float64
		}{
			{"container_cpu_usage_seconds_total" + app, 1e-6},
			{"container_cpu_cfs_throttled_periods_total" + app, 0},
			{"container_memory_working_set_bytes" + app, 4096},
			{"container_memory_usage_bytes" + app, 4096},
			{"container_spec_memory_limit_bytes" + app, 0},
			{`container_fs_writes_bytes_total{container="app",device="` + rootfsDevice(t, body, "app") + `",namespace="default",pod="pm-a"}`, 6 << 20},
			{`container_fs_writes_total{container="app",device="` + rootfsDevice(t, body, "app") + `",namespace="default",pod="pm-a"}`, 6},
			{`container_fs_usage_bytes{container="app",device="` + rootfsDevice(t, body, "app") + `",namespace="default",pod="pm-a"}`, 6 << 20},
			{`cci_rootfs_throttle_limit_bytes_per_second{container="app",device="` + rootfsDevice(t, body, "app") + `",direction="write",namespace="default",pod="pm-a"}`, 6e6},
			// The throttle's effect: 6 MiB at 6 MB/s holds the app back
			// for about a second (0.81 s measured: blk-throttle lets the
			// first slice through); unthrottled it takes milliseconds.
			{"container_pressure_io_waiting_seconds_total" + app, 0.5},
			{"cci_stdio_forwarded_bytes_total" + app, 5},
			{"cci_stdio_throttle_limit_bytes_per_second" + app, 1e6},
			{`container_network_receive_bytes_total{container="",interface="eth0",namespace="default",pod="pm-a"}`, 1},
			{`container_network_transmit_packets_total{container="",interface="eth0",namespace="default",pod="pm-a"}`, 1},
			{`container_cpu_usage_seconds_total{container="POD",namespace="default",pod="pm-a"}`, 0},
			{`cci_pod_metrics_scrape_error{namespace="default",pod="pm-a"}`, 0},
		} {
			v, ok := series(body, want.series)
			if !ok || v < want.min {
				t.Errorf("%s = %v (present %v); want >= %v", want.series, v, ok, want.min)
			}
		}
		if v, _ := series(body, `cci_pod_metrics_scrape_error{namespace="default",pod="pm-a"}`); v != 0 {
			t.Errorf("the scrape could not read every figure (see the shim's log in containerd's):\n%s", env.ContainerdLog())
		}
		// The pod alone: every sample is pm-a's.
		for _, line := range strings.Split(body, "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if !strings.Contains(line, `namespace="default",pod="pm-a"`) {
				t.Errorf("a sample that is not pm-a's: %s", line)
			}
		}
		io, _ := series(body, "container_pressure_io_waiting_seconds_total"+app)
		t.Logf("pm-a's endpoint: %d bytes, %d lines; the app waited %.2f s on I/O writing 6 MiB through the 6 MB/s rootfs throttle", len(body), strings.Count(body, "\n"), io)
	})

	t.Run("annotations move and disable it", func(t *testing.T) {
		body, err := fetch(ctx, t, client, clientID, "http://"+b.ip+":9200/metrics")
		if err != nil || !strings.Contains(body, `pod="pm-b"`) {
			t.Errorf("pm-b at :9200: %v\n%.300s", err, body)
		}
		for _, u := range []string{"http://" + b.ip + ":19100/metrics", "http://" + c.ip + ":19100/metrics"} {
			if _, err := fetch(ctx, t, client, clientID, u); err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("GET %s: %v; want connection refused", u, err)
			}
		}
	})

	t.Run("never on a host address", func(t *testing.T) {
		hostPorts := listeningPorts(t, "/proc/self/net")
		for _, port := range []int{19100, 9200} {
			if hostPorts[port] {
				t.Errorf("port %d listens in the host's network namespace", port)
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
			if err == nil {
				c.Close()
				t.Errorf("127.0.0.1:%d reachable from the host", port)
			} else if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Logf("127.0.0.1:%d from the host: %v", port, err)
			}
		}
		// Where it does listen: the pods' own namespaces.
		if !listeningPorts(t, fmt.Sprintf("/proc/%d/net", a.pid))[19100] {
			t.Errorf("nothing listens on 19100 in pm-a's network namespace")
		}
		if !listeningPorts(t, fmt.Sprintf("/proc/%d/net", b.pid))[9200] {
			t.Errorf("nothing listens on 9200 in pm-b's network namespace")
		}
		if ports := listeningPorts(t, fmt.Sprintf("/proc/%d/net", c.pid)); ports[19100] {
			t.Errorf("pm-c disabled the endpoint, yet 19100 listens in its namespace")
		}
	})

	t.Run("bad values refused", func(t *testing.T) {
		for _, tc := range []struct {
			annotations map[string]string
			ports       []*runtimeapi.PortMapping
			want        []string
		}{
			{annotations: map[string]string{podmetrics.AnnotationPort: "80"}, want: []string{`annotation monitoring.cci.io/metrics-port "80" is not allowed`, "below 1024", "allowed: a decimal TCP port from 1024 to 65535"}},
			{annotations: map[string]string{podmetrics.AnnotationPort: "http"}, want: []string{`metrics-port "http" is not allowed (not a decimal number)`}},
			{annotations: map[string]string{podmetrics.AnnotationEnable: "False"}, want: []string{`annotation monitoring.cci.io/enable-pod-metrics "False" is not allowed; allowed: "true" or "false"`}},
			{ports: []*runtimeapi.PortMapping{{ContainerPort: 8080}, {ContainerPort: 19100}}, want: []string{`containers[].ports[].containerPort "19100" is not allowed`, "move the endpoint with annotation monitoring.cci.io/metrics-port"}},
			{annotations: map[string]string{podmetrics.AnnotationPort: "8080"}, ports: []*runtimeapi.PortMapping{{ContainerPort: 8080}}, want: []string{`metrics-port "8080" is not allowed (a container of the pod declares TCP port 8080)`}},
		} {
			cfg := podConfig(env, "pm-bad", tc.annotations)
			cfg.PortMappings = tc.ports
			p, err := runPod(ctx, env, cfg)
			if err == nil {
				p.remove(ctx, t)
			}
			wantRefused(t, "RunPodSandbox", err, tc.want...)
		}
		// A declared port elsewhere, or 19100 on UDP, is fine.
		cfg := podConfig(env, "pm-ports", nil)
		cfg.PortMappings = []*runtimeapi.PortMapping{{ContainerPort: 8080}, {ContainerPort: 19100, Protocol: runtimeapi.Protocol_UDP}}
		mustRunPod(ctx, t, env, cfg).remove(ctx, t)
	})

	t.Run("memory", func(t *testing.T) {
		// The endpoint's cost in the pod's shim: pm-a (served) against
		// pm-c (disabled), before and after the scrapes above.
		pa, pc := shimPSS(t, env, a.id), shimPSS(t, env, c.id)
		t.Logf("cci shim PSS, endpoint served - disabled: before any scrape %d - %d = %+d KiB; after the scrapes %d - %d = %+d KiB",
			idleA>>10, idleC>>10, (idleA-idleC)>>10, pa>>10, pc>>10, (pa-pc)>>10)
		for _, d := range []int64{idleA - idleC, pa - pc} {
			if d > 2<<20 {
				t.Errorf("the endpoint costs the pod's shim %d KiB; the budget is 2 MiB", d>>10)
			}
		}
	})

	if !t.Failed() {
		scrapeWithPrometheus(ctx, t, env, client, []*metricsPod{a, b, c})
	}
	for _, p := range []*criPod{a.criPod, b.criPod, c.criPod, client} {
		p.remove(ctx, t)
	}
	assertClean(t, env)
}

// rootfsDevice finds the device label of a container's rootfs series.
func rootfsDevice(t *testing.T, body, container string) string {
	t.Helper()
	prefix := `container_fs_usage_bytes{container="` + container + `",device="`
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			dev, _, _ := strings.Cut(rest, `"`)
			return dev
		}
	}
	t.Errorf("no container_fs_usage_bytes series for %s", container)
	return "?"
}

// shimPSS returns the proportional set size of the cci shim serving the
// sandbox id (the shim daemon runs with "-id <sandbox id>").
func shimPSS(t *testing.T, env *e2eenv.Env, id string) int64 {
	t.Helper()
	for _, pid := range env.ShimPIDs(e2eenv.CCIShimBinary) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(b), "\x00-id\x00"+id+"\x00") {
			continue
		}
		rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(rollup), "\n") {
			if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				return kb << 10
			}
		}
	}
	t.Fatalf("no cci shim serves sandbox %s", id)
	return 0
}
