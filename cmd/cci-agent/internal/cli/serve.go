package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/metrics"
	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/internal/version"
	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/shim/podstats"
)

const (
	checkInterval     = time.Minute
	reconcileInterval = 30 * time.Second
	// The log spool is tried this often, each entry for at most
	// spoolEntryTimeout (its destination may still be down).
	spoolInterval     = 30 * time.Second
	spoolEntryTimeout = 20 * time.Second
)

const serveHelp = `Usage: cci-agent [global flags] serve [--listen ADDRESS]

The node agent's service (packaging/systemd/cci-agent.service): runs the node
checks at start and every minute, serves /healthz (200 when no check FAILs,
503 with the failures otherwise) and Prometheus /metrics (pods, throttles and
log collection labelled by Kubernetes namespace, pod, uid and container; the
node checks; GPUs; build, Go and process metrics), and frees GPUs held by
pods that no longer exist. Logs go to stderr; SIGINT or SIGTERM stop it.

Flags:
  --listen ADDRESS   address of /healthz and /metrics (default 127.0.0.1:9477)
` + globalHelp

func runServe(args []string, g globals, stdout, stderr io.Writer) int {
	cmd := newCommand("serve", serveHelp, stdout, stderr)
	listen := cmd.String("listen", "127.0.0.1:9477", "")
	if code, ok := cmd.parse(args); !ok {
		return code
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, src, err := loadConfig(g.configPath)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a := &agent{cfg: cfg, src: src, containerdConfig: g.containerdConfigPath, log: log, ledger: gpu.NewLedger(cfg.GPU, log)}

	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(a, log), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("/healthz", a.healthz)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	in := version.Get()
	log.Info("cci-agent serving", "listen", ln.Addr().String(), "config", src.Path, "config_from", src.From,
		"containerd_config", g.containerdConfigPath, "backend", cfg.Backend.Kind, "state_dir", cfg.StateDir,
		"version", in.Version, "revision", in.Revision)
	a.runChecks()
	go a.every(ctx, checkInterval, a.runChecks)
	go a.every(ctx, reconcileInterval, a.reconcileGPUs)
	go a.every(ctx, spoolInterval, func() { a.drainLogSpool(ctx) })

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		log.Info("stopping", "reason", context.Cause(ctx))
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serving", "error", err)
		return 1
	}
	return 0
}

// agent is the node agent's state: the last node checks, and the sources
// of the metrics.
type agent struct {
	cfg              config.Config
	src              config.Source
	containerdConfig string
	log              *slog.Logger
	ledger           *gpu.Ledger

	mu     sync.Mutex
	checks []checks.Result // guarded by mu
}

var _ metrics.Source = (*agent)(nil)

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
	rs := checks.Runner{Root: "/", Cfg: a.cfg, Source: a.src, ContainerdConfig: a.containerdConfig}.Run()
	a.mu.Lock()
	prev := map[string]checks.Status{}
	for _, r := range a.checks {
		prev[r.Name] = r.Status
	}
	a.checks = rs
	a.mu.Unlock()
	for _, r := range rs {
		if r.Status == prev[r.Name] || (prev[r.Name] == "" && r.Status.Passed()) {
			continue // log changes only
		}
		level := slog.LevelInfo
		switch r.Status {
		case checks.Fail:
			level = slog.LevelError
		case checks.Warn:
			level = slog.LevelWarn
		}
		a.log.Log(context.Background(), level, "node check", "check", r.Name, "status", r.Status, "detail", r.Detail, "fix", r.Fix)
	}
}

// Checks is the last node checks.
func (a *agent) Checks() []checks.Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.checks
}

// Pods reads the pods' stats files.
func (a *agent) Pods() (map[string]podstats.Pod, error) { return podstats.ReadAll(a.cfg.StateDir) }

// GPUAllocations reads the ledger, if there is one.
func (a *agent) GPUAllocations() ([]gpu.Allocation, error) {
	if _, err := os.Stat(a.cfg.GPU.LedgerPath()); isNotExist(err) {
		return nil, nil
	}
	return a.ledger.List()
}

// drainLogSpool delivers the log volumes of pods that went away while their
// log destination was down (R18), each within spoolEntryTimeout.
func (a *agent) drainLogSpool(ctx context.Context) {
	res, err := logfwd.DrainSpool(ctx, a.cfg.LogSpoolDir(), spoolEntryTimeout, a.log.With("component", "logfwd"))
	if err != nil {
		a.log.Warn("delivering spooled pod logs", "error", err)
	}
	if res.Drained > 0 || res.Left > 0 {
		a.log.Info("spooled pod logs", "delivered", res.Drained, "left", res.Left, "spool", a.cfg.LogSpoolDir())
	}
}

// reconcileGPUs frees GPUs held by pods that no longer exist (a shim that
// crashed before releasing them). Live pods are the pod state dirs, each
// with the owner's record of its resources.
func (a *agent) reconcileGPUs() {
	dirs, _ := filepath.Glob(filepath.Join(a.cfg.StateDir, "*", "*", "resources.json"))
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
	var failed []string
	for _, r := range a.Checks() {
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
