package shim

// Wiring of the pod metrics endpoint (R27), kept in this one file: called
// from Create (planPodMetrics after admission, startPodMetrics as its last
// step, when nothing after it can fail) and from Start (startPodMetricsRelay
// once the sandbox runs). The endpoint holds no host resource that outlives
// this process (a listening socket, a namespace fd, FIFOs in the container's
// io dir, an exec that dies with the sandbox), so it is not in the pod's
// owner: Shutdown's callbacks close it.
//
// Who serves the endpoint is the backend adapter's trait: MetricsHostNetns
// (runc) has this shim listen inside the pod's network namespace;
// MetricsInSandbox (gVisor, Kata: the sandbox owns the pod's IP) mounts the
// relay cmd/cci-podmetrics read-only into the sandbox container, runs it there
// as an exec of the backend, and answers its requests over its stdio. Either
// way this shim computes the figures, on scrape only.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	taskv3 "github.com/containerd/containerd/api/runtime/task/v3"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/cci-shim/cci-shim/podmetrics"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// podMetricsPlan is what the sandbox's Create decided about the endpoint.
type podMetricsPlan struct {
	cfg       podmetrics.Config
	namespace string // the pod's namespace and name, for the labels
	name      string
}

// planPodMetrics validates the pod's R27 annotations at the sandbox's Create,
// before anything is set up; nil for other containers. A port that a
// container of the pod declares is refused: CRI's sandbox config, which
// containerd keeps on the sandbox's container record, lists the ports.
func (s *service) planPodMetrics(ctx context.Context, id string, spec *specs.Spec, pod *sandbox.Pod) (*podMetricsPlan, error) {
	if !pod.IsSandbox() {
		return nil, nil
	}
	cfg, err := podmetrics.ParseAnnotations(spec.Annotations)
	if err != nil {
		return nil, err
	}
	p := &podMetricsPlan{cfg: cfg}
	p.namespace, p.name = podMetricsLabels(s.launch.namespace, id, pod)
	if !cfg.Enabled {
		return p, nil
	}
	if pod.Type == sandbox.TypeSandbox {
		ports, err := s.declaredPorts(ctx, id)
		if err != nil {
			// Only the pod's own containers could lose their port; the
			// endpoint still starts.
			log.G(ctx).WithError(err).Warn("pod metrics: cannot read the pod's declared ports; not checking them")
		} else if err := cfg.CheckPorts(ports); err != nil {
			return nil, err
		}
	}
	if s.traits.PodMetrics == backend.MetricsInSandbox {
		bin, err := relayBinary()
		if err != nil {
			return nil, fmt.Errorf("pod metrics: %w (or set annotation %s: \"false\"): %w", err, podmetrics.AnnotationEnable, errdefs.ErrFailedPrecondition)
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: podmetrics.RelayPath, Type: "bind", Source: bin,
			Options: []string{"rbind", "ro", "nosuid", "nodev"}})
	}
	return p, nil
}

// podMetricsLabels are the namespace and pod labels: CRI's, or for a
// standalone container (ctr) its containerd namespace and id.
func podMetricsLabels(ns, id string, pod *sandbox.Pod) (string, string) {
	if pod.Type == sandbox.TypeStandalone {
		return ns, id
	}
	return pod.Namespace, pod.SandboxName
}

// relayBinary finds the in-sandbox relay beside this shim's binary. It is
// mounted into tenants' sandboxes, so it must be root's and writable by no
// one else.
func relayBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locating the shim binary: %w", err)
	}
	bin := filepath.Join(filepath.Dir(self), podmetrics.RelayBinary)
	var st unix.Stat_t
	if err := unix.Lstat(bin, &st); err != nil {
		return "", fmt.Errorf("the in-sandbox relay %s is not installed beside the shim: %w", bin, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o022 != 0 {
		return "", fmt.Errorf("the in-sandbox relay %s must be a regular file of root's, writable by root alone", bin)
	}
	return bin, nil
}

// declaredPorts reads the container ports of a CRI pod from the sandbox's
// container record in containerd.
func (s *service) declaredPorts(ctx context.Context, id string) ([]podmetrics.ContainerPort, error) {
	conn, err := grpc.NewClient("unix://"+strings.TrimPrefix(s.launch.grpcAddress, "unix://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(ctx, s.launch.namespace), 5*time.Second)
	defer cancel()
	resp, err := containersapi.NewContainersClient(conn).Get(ctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		return nil, fmt.Errorf("reading container %s: %w", id, err)
	}
	ext, ok := resp.GetContainer().GetExtensions()[podmetrics.CRISandboxMetadataExtension]
	if !ok {
		return nil, fmt.Errorf("container %s has no %s extension", id, podmetrics.CRISandboxMetadataExtension)
	}
	return podmetrics.PortsFromCRISandboxMetadata(ext.GetValue())
}

// startPodMetrics starts serving the endpoint once the sandbox exists (its
// process pid is the backend's answer to Create). Where the backend owns the
// pod's interface itself, the endpoint is the sandbox's to serve
// (startPodMetricsRelay), not done here. The tenant's choices were checked
// by planPodMetrics; what can fail here is the host's (the namespace gone,
// the port taken in it), so it is logged and the pod runs without its
// endpoint, as with the relay: a scrape then fails where the tenant sees it.
func (s *service) startPodMetrics(ctx context.Context, p *podMetricsPlan, spec *specs.Spec, pid uint32) {
	if p == nil || !p.cfg.Enabled || s.traits.PodMetrics != backend.MetricsHostNetns {
		return
	}
	if err := s.servePodMetrics(ctx, p, spec, pid); err != nil {
		log.G(ctx).WithError(err).Error("pod metrics: the endpoint did not start; the pod runs without it")
	}
}

func (s *service) servePodMetrics(ctx context.Context, p *podMetricsPlan, spec *specs.Spec, pid uint32) error {
	path, ok := netnsPath(spec)
	if !ok {
		return fmt.Errorf("the sandbox has no network namespace of its own, so no pod IP to serve on")
	}
	if path == "" {
		path = fmt.Sprintf("/proc/%d/ns/net", pid)
	}
	ns, err := podmetrics.OpenNetNS(path)
	if err != nil {
		return err
	}
	ln, err := ns.Listen(p.cfg.Port)
	if err != nil {
		ns.Close()
		return err
	}
	logger := podMetricsLogger()
	src := &podmetrics.HostSource{
		CgroupRoot: "/sys/fs/cgroup",
		ProcRoot:   "/proc",
		NetNS:      ns,
		Pod:        func() podmetrics.Pod { return s.podMetricsView(p) },
	}
	srv := podmetrics.Serve(ln, podmetrics.NewHandler(podmetrics.NewCollector(src, logger), logger), logger)
	s.shutdown.RegisterCallback(func(context.Context) error {
		srv.Close()
		return ns.Close()
	})
	log.G(ctx).WithField("port", p.cfg.Port).WithField("netns", path).Info("pod metrics endpoint serving in the pod's network namespace")
	return nil
}

// podMetricsView is the pod as a scrape sees it; no I/O.
func (s *service) podMetricsView(p *podMetricsPlan) podmetrics.Pod {
	view := podmetrics.Pod{Namespace: p.namespace, Name: p.name}
	if l := s.collector.Load(); l != nil {
		st := l.Stats()
		view.Logs = &st
	}
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		pc := podmetrics.Container{ID: c.id, Name: c.name}
		if c.spec != nil {
			if c.spec.Annotations[sandbox.AnnotationContainerType] == string(sandbox.TypeSandbox) {
				pc.Name = podmetrics.SandboxContainer
			}
			if c.spec.Linux != nil {
				pc.CgroupsPath = c.spec.Linux.CgroupsPath
			}
		}
		if t := c.rootfs; t != nil {
			pc.Device = &podmetrics.BlockDevice{Path: t.dev.Path, Major: uint64(t.dev.Major), Minor: uint64(t.dev.Minor)}
			pc.Limits = t.limits
			pc.RootfsDir = filepath.Join(c.bundle, "rootfs")
			if t.watch != nil {
				st := t.watch.Status()
				pc.Burst = &st
			}
		}
		if c.stdio != nil {
			st := c.stdio.Stats()
			pc.Stdio = &st
		}
		view.Containers = append(view.Containers, pc)
	}
	return view
}

func podMetricsLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "podmetrics")
}

// netnsPath is the network namespace path of a spec: ok false when the spec
// has no network namespace, path "" when the runtime makes a new one.
func netnsPath(spec *specs.Spec) (path string, ok bool) {
	if spec.Linux == nil {
		return "", false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path, true
		}
	}
	return "", false
}

// processSpecTypeURL is how containerd names an OCI process spec in an Any.
const processSpecTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/Process"

// startPodMetricsRelay starts the in-sandbox relay once the pod's sandbox
// runs, for backends whose sandbox owns the pod's interface. It runs as
// nobody without capabilities in the sandbox container, where the shim
// mounted it at Create. The sandbox already runs, so a failure here is
// logged, not returned: the pod goes on without its endpoint.
func (s *service) startPodMetricsRelay(ctx context.Context, c *container, t *taskClient) {
	if s.traits.PodMetrics != backend.MetricsInSandbox || c.spec == nil {
		return
	}
	pod, err := sandbox.PodFromSpec(c.spec)
	if err != nil || !pod.IsSandbox() {
		return
	}
	cfg, err := podmetrics.ParseAnnotations(c.spec.Annotations)
	if err != nil || !cfg.Enabled {
		return
	}
	if err := s.runPodMetricsRelay(ctx, c, t, pod, cfg); err != nil {
		log.G(ctx).WithError(err).Error("pod metrics: the in-sandbox endpoint did not start; the pod runs without it")
	}
}

func (s *service) runPodMetricsRelay(ctx context.Context, c *container, t *taskClient, pod *sandbox.Pod, cfg podmetrics.Config) (retErr error) {
	dir := s.ioDir(c.id)
	paths := [3]string{filepath.Join(dir, "podmetrics-stdin"), filepath.Join(dir, "podmetrics-stdout"), filepath.Join(dir, "podmetrics-stderr")}
	var files [3]io.ReadWriteCloser
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}
	defer func() {
		if retErr != nil {
			closeAll()
		}
	}()
	for i, flag := range []int{syscall.O_WRONLY, syscall.O_RDONLY, syscall.O_RDONLY} {
		f, err := fifo.OpenFifo(s.ctx, paths[i], flag|syscall.O_CREAT|syscall.O_NONBLOCK, 0o600)
		if err != nil {
			return fmt.Errorf("relay stdio: %w", err)
		}
		files[i] = f
	}
	proc, err := json.Marshal(&specs.Process{
		Args:            podmetrics.RelayArgs(cfg),
		Cwd:             "/",
		User:            specs.User{UID: 65534, GID: 65534},
		NoNewPrivileges: true,
		Capabilities:    &specs.LinuxCapabilities{},
	})
	if err != nil {
		return err
	}
	if _, err := t.Exec(ctx, &taskv3.ExecProcessRequest{ID: c.id, ExecID: podmetrics.RelayExecID,
		Stdin: paths[0], Stdout: paths[1], Stderr: paths[2],
		Spec: &anypb.Any{TypeUrl: processSpecTypeURL, Value: proc}}); err != nil {
		return fmt.Errorf("exec of the relay: %w", err)
	}
	if _, err := t.Start(ctx, &taskv3.StartRequest{ID: c.id, ExecID: podmetrics.RelayExecID}); err != nil {
		return fmt.Errorf("starting the relay: %w", err)
	}

	var ns *podmetrics.NetNS
	if path, _ := netnsPath(c.spec); path != "" {
		// The pod's interface counters, from the host side of its netns.
		if ns, err = podmetrics.OpenNetNS(path); err != nil {
			log.G(ctx).WithError(err).Warn("pod metrics: no network figures")
		}
	}
	logger := podMetricsLogger()
	p := &podMetricsPlan{cfg: cfg}
	p.namespace, p.name = podMetricsLabels(s.launch.namespace, c.id, pod)
	src := &podmetrics.HostSource{
		CgroupRoot:   "/sys/fs/cgroup",
		ProcRoot:     "/proc",
		NetNS:        ns,
		Pod:          func() podmetrics.Pod { return s.podMetricsView(p) },
		BackendStats: backendStats(t),
	}
	stop := func() {
		closeAll()
		if ns != nil {
			ns.Close()
		}
	}
	s.shutdown.RegisterCallback(func(context.Context) error { stop(); return nil })
	go func() {
		sc := bufio.NewScanner(files[2])
		for sc.Scan() {
			logger.Warn("in-sandbox relay", "stderr", sc.Text())
		}
	}()
	go func() {
		err := podmetrics.ServeRelay(files[1], files[0], podmetrics.NewHandler(podmetrics.NewCollector(src, logger), logger))
		logger.Info("in-sandbox relay ended", "error", err)
		stop()
	}()
	log.G(ctx).WithField("port", cfg.Port).Info("pod metrics endpoint serving from the sandbox")
	return nil
}

// backendStats asks the backend for a container's cgroup metrics, as
// containerd does for kubelet.
func backendStats(t *taskClient) func(context.Context, string) (any, error) {
	return func(ctx context.Context, id string) (any, error) {
		resp, err := t.Stats(ctx, &taskv3.StatsRequest{ID: id})
		if err != nil {
			return nil, err
		}
		if resp.GetStats() == nil {
			return nil, nil
		}
		return typeurl.UnmarshalAny(resp.GetStats())
	}
}
