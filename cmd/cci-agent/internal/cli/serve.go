package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/shim/podstats"
)

const (
	checkInterval     = time.Minute
	reconcileInterval = 30 * time.Second
)

func runServe(args []string, configPath string, stderr io.Writer, log *slog.Logger) int {
	fs := flag.NewFlagSet("cci-agent serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9477", "address of /healthz and /metrics")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(configPath, false)
	if err != nil {
		fmt.Fprintf(stderr, "cci-agent serve: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a := &agent{cfg: cfg, log: log, ledger: gpu.NewLedger(cfg.GPU, log)}
	a.runChecks()
	go a.every(ctx, checkInterval, a.runChecks)
	go a.every(ctx, reconcileInterval, a.reconcileGPUs)

	reg := prometheus.NewRegistry()
	reg.MustRegister(a)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", a.healthz)
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("serving", "listen", *listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "cci-agent serve: %v\n", err)
		return 1
	}
	return 0
}

// agent is the node agent's state: the last node checks and the metrics.
type agent struct {
	cfg    config.Config
	log    *slog.Logger
	ledger *gpu.Ledger

	mu     sync.Mutex
	checks []checks.Result // guarded by mu
}

func (a *agent) every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func (a *agent) runChecks() {
	rs := checks.Runner{Root: "/", Cfg: a.cfg}.Run()
	a.mu.Lock()
	a.checks = rs
	a.mu.Unlock()
	for _, r := range rs {
		if r.Status == checks.Fail {
			a.log.Warn("node check failed", "check", r.Name, "detail", r.Detail)
		}
	}
}

// reconcileGPUs frees GPUs held by pods that no longer exist (a shim that
// crashed before releasing them). Live pods are the pod state dirs.
func (a *agent) reconcileGPUs() {
	dirs, _ := filepath.Glob(filepath.Join(a.cfg.StateDir, "*", "*", "shim.pid"))
	live := map[string]bool{}
	for _, d := range dirs {
		pod := filepath.Dir(d)
		live[filepath.Base(filepath.Dir(pod))+"/"+filepath.Base(pod)] = true
	}
	if _, err := os.Stat(a.cfg.GPU.LedgerPath()); err != nil {
		return
	}
	if freed, err := a.ledger.Reconcile(live); err != nil {
		a.log.Warn("reconciling gpu ledger", "error", err)
	} else if len(freed) > 0 {
		a.log.Info("freed gpus of pods that are gone", "pods", freed)
	}
}

func (a *agent) healthz(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	rs := a.checks
	a.mu.Unlock()
	var failed []string
	for _, r := range rs {
		if r.Status == checks.Fail {
			failed = append(failed, r.Name+": "+r.Detail)
		}
	}
	if len(failed) > 0 {
		http.Error(w, strings.Join(failed, "\n"), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

var (
	podLabels = []string{"namespace", "pod"}
	ctrLabels = []string{"namespace", "pod", "container"}
	descs     = map[string]*prometheus.Desc{
		"pods":        prometheus.NewDesc("cci_pods", "Pods served by cci shims on this node.", nil, nil),
		"check":       prometheus.NewDesc("cci_node_check_ok", "1 when the node check passes (OK or WARN).", []string{"check"}, nil),
		"stdioBytes":  prometheus.NewDesc("cci_stdio_forwarded_bytes_total", "Stdout+stderr bytes forwarded to containerd.", ctrLabels, nil),
		"stdioWait":   prometheus.NewDesc("cci_stdio_throttle_wait_seconds_total", "Time the stdout throttle held a container back.", ctrLabels, nil),
		"rootfsBytes": prometheus.NewDesc("cci_rootfs_io_bytes_total", "Bytes moved on the pod's rootfs device.", append(ctrLabels, "direction"), nil),
		"rootfsIOs":   prometheus.NewDesc("cci_rootfs_ios_total", "I/O operations on the pod's rootfs device.", append(ctrLabels, "direction"), nil),
		"logLines":    prometheus.NewDesc("cci_log_lines_total", "Log records delivered to the sink.", podLabels, nil),
		"logBytes":    prometheus.NewDesc("cci_log_bytes_total", "Log bytes delivered to the sink.", podLabels, nil),
		"logSplit":    prometheus.NewDesc("cci_log_split_lines_total", "Lines over 250 KB split into parts.", podLabels, nil),
		"logDropped":  prometheus.NewDesc("cci_log_dropped_lines_total", "Lines over 250 KB dropped.", podLabels, nil),
		"logSkipped":  prometheus.NewDesc("cci_log_skipped_files_total", "Files not collected, by reason.", append(podLabels, "reason"), nil),
		"logLag":      prometheus.NewDesc("cci_log_lag_bytes", "Bytes written but not yet delivered.", podLabels, nil),
		"gpus":        prometheus.NewDesc("cci_gpus_allocated", "GPUs held by pods.", nil, nil),
	}
)

// Describe sends every metric's description.
func (a *agent) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// Collect reads the pods' stats files at scrape time.
func (a *agent) Collect(ch chan<- prometheus.Metric) {
	counter := func(d string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(descs[d], prometheus.CounterValue, v, labels...)
	}
	gauge := func(d string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(descs[d], prometheus.GaugeValue, v, labels...)
	}
	a.mu.Lock()
	for _, r := range a.checks {
		v := 1.0
		if r.Status == checks.Fail {
			v = 0
		}
		gauge("check", v, r.Name)
	}
	a.mu.Unlock()
	pods, err := podstats.ReadAll(a.cfg.StateDir)
	if err != nil {
		a.log.Warn("reading pod stats", "error", err)
	}
	gauge("pods", float64(len(pods)))
	for key, p := range pods {
		ns, pod, _ := strings.Cut(key, "/")
		for id, c := range p.Containers {
			counter("stdioBytes", float64(c.Stdio.BytesForwarded), ns, pod, id)
			counter("stdioWait", c.Stdio.WaitTime.Seconds(), ns, pod, id)
			if c.Rootfs != nil && c.Rootfs.IO != nil {
				io := c.Rootfs.IO
				counter("rootfsBytes", float64(io.ReadBytes), ns, pod, id, "read")
				counter("rootfsBytes", float64(io.WriteBytes), ns, pod, id, "write")
				counter("rootfsIOs", float64(io.ReadIOs), ns, pod, id, "read")
				counter("rootfsIOs", float64(io.WriteIOs), ns, pod, id, "write")
			}
		}
		if l := p.Logs; l != nil {
			counter("logLines", float64(l.Lines), ns, pod)
			counter("logBytes", float64(l.Bytes), ns, pod)
			counter("logSplit", float64(l.SplitLines), ns, pod)
			counter("logDropped", float64(l.DroppedLines), ns, pod)
			gauge("logLag", float64(l.LagBytes), ns, pod)
			for reason, n := range l.Skipped {
				counter("logSkipped", float64(n), ns, pod, reason)
			}
		}
	}
	if allocs, err := a.ledger.List(); err == nil {
		n := 0
		for _, al := range allocs {
			n += len(al.Devices)
		}
		gauge("gpus", float64(n))
	}
}
