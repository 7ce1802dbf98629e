package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/podmetrics"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// podScrapeConfig is the scrape job a tenant's Prometheus runs with
// kubernetes_sd_configs (role: pod), here with the discovered pods written as
// static targets carrying the same __meta_kubernetes_* labels: pods are kept
// unless enable-pod-metrics is "false", and scraped at <pod IP>:19100 or the
// port metrics-port names.
const podScrapeConfig = `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: cci-pod-metrics
    static_configs:
%s
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_monitoring_cci_io_enable_pod_metrics]
        regex: "false"
        action: drop
      - source_labels: [__meta_kubernetes_pod_ip, __meta_kubernetes_pod_annotation_monitoring_cci_io_metrics_port]
        regex: "(.+);"
        replacement: "${1}:19100"
        target_label: __address__
      - source_labels: [__meta_kubernetes_pod_ip, __meta_kubernetes_pod_annotation_monitoring_cci_io_metrics_port]
        regex: "(.+);(.+)"
        replacement: "${1}:${2}"
        target_label: __address__
`

// scrapeWithPrometheus runs Debian's Prometheus in the client pod's network
// (where a tenant's Prometheus runs), scraping the pods as kubernetes_sd
// would find them, and checks one PromQL query per pod.
func scrapeWithPrometheus(ctx context.Context, t *testing.T, env *e2eenv.Env, client *criPod, pods []*metricsPod) {
	t.Helper()
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		testutil.Unavailable(t, "prometheus not found (Debian package prometheus; scripts/deps.sh installs it)")
	}
	_, clientPid := sandboxAddress(ctx, t, client)
	var targets strings.Builder
	for _, p := range pods {
		cfg := p.cfg.Annotations
		fmt.Fprintf(&targets, "      - targets: [%q]\n        labels:\n", p.ip)
		fmt.Fprintf(&targets, "          __meta_kubernetes_namespace: %q\n          __meta_kubernetes_pod_name: %q\n          __meta_kubernetes_pod_ip: %q\n",
			p.cfg.Metadata.Namespace, p.cfg.Metadata.Name, p.ip)
		fmt.Fprintf(&targets, "          __meta_kubernetes_pod_annotation_monitoring_cci_io_enable_pod_metrics: %q\n", cfg[podmetrics.AnnotationEnable])
		fmt.Fprintf(&targets, "          __meta_kubernetes_pod_annotation_monitoring_cci_io_metrics_port: %q\n", cfg[podmetrics.AnnotationPort])
	}
	dir := filepath.Join(env.Dir, "prometheus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(fmt.Sprintf(podScrapeConfig, targets.String())), 0o600); err != nil {
		t.Fatal(err)
	}
	netns := fmt.Sprintf("--net=/proc/%d/ns/net", clientPid)
	cmd := exec.Command("nsenter", netns, prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address=127.0.0.1:19090", "--log.level=warn")
	logFile, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	query := func(q string) []promSample {
		out, err := exec.CommandContext(ctx, "nsenter", netns, "curl", "-sf", "--max-time", "5",
			"http://127.0.0.1:19090/api/v1/query?query="+url.QueryEscape(q)).Output()
		if err != nil {
			return nil
		}
		var r struct {
			Status string
			Data   struct{ Result []promSample }
		}
		if json.Unmarshal(out, &r) != nil || r.Status != "success" {
			return nil
		}
		return r.Data.Result
	}

	// The disabled pod is dropped by relabeling; the other two are up.
	if !waitFor(60*time.Second, func() bool { return len(query(`up == 1`)) == 2 }) {
		log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
		t.Fatalf("prometheus: up == 1 for %v; want pm-a and pm-b\n%s", query("up"), log)
	}
	want := map[string]string{"pm-a": pods[0].ip + ":19100", "pm-b": pods[1].ip + ":9200"}
	for pod, instance := range want {
		// A few scrapes for rate().
		q := fmt.Sprintf(`rate(container_cpu_usage_seconds_total{namespace="default",pod=%q,container="app"}[5s])`, pod)
		var got []promSample
		waitFor(15*time.Second, func() bool { got = query(q); return len(got) == 1 })
		if len(got) != 1 || got[0].Metric["instance"] != instance {
			t.Errorf("%s = %+v; want one series from %s", q, got, instance)
		} else {
			t.Logf("%s = %s (from %s)", q, got[0].Value[1], got[0].Metric["instance"])
		}
		q = fmt.Sprintf(`container_memory_working_set_bytes{namespace="default",pod=%q,container="app"}`, pod)
		if got := query(q); len(got) != 1 || got[0].Metric["instance"] != instance || got[0].Value[1] == "0" {
			t.Errorf("%s = %+v; want one non-zero series from %s", q, got, instance)
		} else {
			t.Logf("%s = %s", q, got[0].Value[1])
		}
	}
	if got := query(`count by (pod) (container_memory_working_set_bytes)`); len(got) != 2 {
		t.Errorf("pods with figures: %+v; want pm-a and pm-b (pm-c disabled its endpoint)", got)
	}
}

type promSample struct {
	Metric map[string]string
	Value  [2]any
}

// sandboxAddress returns a pod's IP and its sandbox process.
func sandboxAddress(ctx context.Context, t *testing.T, p *criPod) (string, int) {
	t.Helper()
	st, err := p.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	ip := st.GetStatus().GetNetwork().GetIp()
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 || ip == "" {
		t.Fatalf("pod %s: ip %q, sandbox pid from %q: %v", p.cfg.Metadata.Name, ip, st.GetInfo()["info"], err)
	}
	return ip, info.Pid
}
