package metrics

import (
	"bytes"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
	"github.com/cci-shim/cci-shim/gpu"
	cciutil "github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/shim/podstats"
)

type fakeSource struct {
	checks []checks.Result
	pods   map[string]podstats.Pod
	allocs []gpu.Allocation
}

func (f fakeSource) Checks() []checks.Result                   { return f.checks }
func (f fakeSource) Pods() (map[string]podstats.Pod, error)    { return f.pods, nil }
func (f fakeSource) GPUAllocations() ([]gpu.Allocation, error) { return f.allocs, nil }

func source() fakeSource {
	now := time.Unix(1700000000, 0)
	return fakeSource{
		checks: []checks.Result{{Name: "kvm", Status: checks.OK}, {Name: "cgroups", Status: checks.Warn}, {Name: "gpus", Status: checks.Skip},
			{Name: "thin-pool", Status: checks.Fail}},
		pods: map[string]podstats.Pod{
			"k8s.io/5f1a": {Time: now, PodIdentity: podstats.PodIdentity{Namespace: "shop", Name: "web-0", UID: "7c1e"},
				Containers: map[string]podstats.Container{
					"5f1a": {ContainerIdentity: podstats.ContainerIdentity{Type: "sandbox"}},
					"9b2c": {ContainerIdentity: podstats.ContainerIdentity{Name: "app", Type: "container"},
						Stdio: iothrottle.Stats{RateBytesPerSec: 1000000, BytesForwarded: 3000000, Waits: 40, WaitTime: 2500 * time.Millisecond},
						Rootfs: &podstats.Rootfs{Device: "7:3", Limits: iothrottle.DeviceLimits{ReadBps: 6000000, WriteBps: 6000000, ReadIOPS: 1000, WriteIOPS: 1000},
							IO: &iothrottle.DeviceIOStats{ReadBytes: 2 << 20, WriteBytes: 18 << 20, ReadIOs: 30, WriteIOs: 18}}},
				},
				Logs: &logfwd.Stats{Files: 2, FilesTotal: 3, Lines: 150, Bytes: 2500, Skipped: map[string]uint64{"name_too_long": 1}, LastDelivery: now}},
			// A pod run with ctr: no Kubernetes identity, told apart by its IDs.
			"default/demo-1": {Time: now, Containers: map[string]podstats.Container{"demo-1": {Stdio: iothrottle.Stats{BytesForwarded: 6}}}},
		},
		allocs: []gpu.Allocation{{PodID: "k8s.io/5f1a", Devices: []gpu.Device{{UUID: "GPU-1"}, {UUID: "GPU-2"}}}},
	}
}

func registry(src Source) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(src, slog.New(slog.NewTextHandler(io.Discard, nil))))
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func TestCollector(t *testing.T) {
	reg := registry(source())
	want := `
# HELP cci_container_stdio_forwarded_bytes_total Stdout+stderr bytes forwarded to containerd.
# TYPE cci_container_stdio_forwarded_bytes_total counter
cci_container_stdio_forwarded_bytes_total{container="",containerd_namespace="default",id="demo-1",namespace="",pod="",sandbox_id="demo-1",uid=""} 6
cci_container_stdio_forwarded_bytes_total{container="app",containerd_namespace="k8s.io",id="9b2c",namespace="shop",pod="web-0",sandbox_id="5f1a",uid="7c1e"} 3e+06
# HELP cci_container_stdio_throttle_wait_seconds_total Time the stdout throttle held the container back.
# TYPE cci_container_stdio_throttle_wait_seconds_total counter
cci_container_stdio_throttle_wait_seconds_total{container="",containerd_namespace="default",id="demo-1",namespace="",pod="",sandbox_id="demo-1",uid=""} 0
cci_container_stdio_throttle_wait_seconds_total{container="app",containerd_namespace="k8s.io",id="9b2c",namespace="shop",pod="web-0",sandbox_id="5f1a",uid="7c1e"} 2.5
# HELP cci_container_rootfs_limit_bytes_per_second The rootfs device's configured bandwidth limit per direction (R8); 0 is unlimited.
# TYPE cci_container_rootfs_limit_bytes_per_second gauge
cci_container_rootfs_limit_bytes_per_second{container="app",containerd_namespace="k8s.io",direction="read",id="9b2c",namespace="shop",pod="web-0",sandbox_id="5f1a",uid="7c1e"} 6e+06
cci_container_rootfs_limit_bytes_per_second{container="app",containerd_namespace="k8s.io",direction="write",id="9b2c",namespace="shop",pod="web-0",sandbox_id="5f1a",uid="7c1e"} 6e+06
# HELP cci_node_check_ok 1 when the node check passed (OK, or SKIP: it does not apply to this node's backend); 0 for WARN and FAIL.
# TYPE cci_node_check_ok gauge
cci_node_check_ok{check="cgroups"} 0
cci_node_check_ok{check="gpus"} 1
cci_node_check_ok{check="kvm"} 1
cci_node_check_ok{check="thin-pool"} 0
# HELP cci_pods Pods served by cci shims on this node (stats files present).
# TYPE cci_pods gauge
cci_pods 2
# HELP cci_gpus_allocated GPUs held by pods, from the node's GPU ledger.
# TYPE cci_gpus_allocated gauge
cci_gpus_allocated 2
# HELP cci_pod_log_skipped_files_total Files not collected, by reason.
# TYPE cci_pod_log_skipped_files_total counter
cci_pod_log_skipped_files_total{containerd_namespace="k8s.io",namespace="shop",pod="web-0",reason="name_too_long",sandbox_id="5f1a",uid="7c1e"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"cci_container_stdio_forwarded_bytes_total", "cci_container_stdio_throttle_wait_seconds_total",
		"cci_container_rootfs_limit_bytes_per_second", "cci_node_check_ok", "cci_pods", "cci_gpus_allocated",
		"cci_pod_log_skipped_files_total"); err != nil {
		t.Error(err)
	}
	// The pause container is the pod, not a container: no series for id 5f1a.
	text := exposition(t, reg)
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "cci_container_") && strings.Contains(line, `,id="5f1a"`) {
			t.Errorf("pause container listed: %s", line)
		}
	}
	for _, w := range []string{`cci_build_info{containerd="`, "go_goroutines ", "process_resident_memory_bytes ",
		`cci_node_check_status{check="cgroups",status="WARN"} 1`, `cci_node_check_status{check="cgroups",status="OK"} 0`,
		`cci_pod_info{containerd_namespace="k8s.io",namespace="shop",pod="web-0",sandbox_id="5f1a",uid="7c1e"} 1`,
		`cci_container_rootfs_io_operations_total{container="app",containerd_namespace="k8s.io",direction="write",id="9b2c",namespace="shop",pod="web-0",sandbox_id="5f1a",uid="7c1e"} 18`,
		`cci_pod_log_last_delivery_timestamp_seconds{containerd_namespace="k8s.io",namespace="shop",pod="web-0",sandbox_id="5f1a",uid="7c1e"} 1.7e+09`,
	} {
		if !strings.Contains(text, w) {
			t.Errorf("exposition lacks %q", w)
		}
	}
}

func exposition(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// promtool, the Prometheus project's own linter, finds nothing to say.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		cciutil.Unavailable(t, "promtool (Debian package prometheus) is not installed: %v", err)
	}
	text := exposition(t, registry(source()))
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	// And the client library's copy of the same linter.
	problems, err := testutil.GatherAndLint(registry(source()))
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}
