package shim

// Wiring of the pod metrics endpoint (R27). Kept in this one file, called
// from Create in two places, so that it moves as a unit into the refactored
// shim.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
	p := &podMetricsPlan{cfg: cfg, namespace: pod.Namespace, name: pod.SandboxName}
	if pod.Type == sandbox.TypeStandalone {
		p.namespace, p.name = s.launch.namespace, id
	}
	if !cfg.Enabled || pod.Type != sandbox.TypeSandbox {
		return p, nil
	}
	ports, err := s.declaredPorts(ctx, id)
	if err != nil {
		// Only the pod's own containers could lose their port; the
		// endpoint still starts.
		log.G(ctx).WithError(err).Warn("pod metrics: cannot read the pod's declared ports; not checking them")
		return p, nil
	}
	if err := cfg.CheckPorts(ports); err != nil {
		return nil, err
	}
	return p, nil
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
// process pid is the backend's answer to Create) and returns what stops it.
// Where the backend owns the pod's interface itself, the endpoint is the
// sandbox's to serve (see podmetrics' relay), not done here.
func (s *service) startPodMetrics(ctx context.Context, p *podMetricsPlan, spec *specs.Spec, pid uint32) (func(), error) {
	if p == nil || !p.cfg.Enabled {
		return func() {}, nil
	}
	if s.adapter.Traits().PodMetrics != backend.MetricsHostNetns {
		log.G(ctx).WithField("backend", s.adapter.Kind()).Warn("pod metrics: the in-sandbox endpoint is not wired yet; not serving")
		return func() {}, nil
	}
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace && ns.Path != "" {
				path = ns.Path
			}
		}
	}
	ns, err := podmetrics.OpenNetNS(path)
	if err != nil {
		return nil, fmt.Errorf("pod metrics: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	ln, err := ns.Listen(p.cfg.Port)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("pod metrics: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "podmetrics")
	src := &podmetrics.HostSource{
		CgroupRoot: "/sys/fs/cgroup",
		ProcRoot:   "/proc",
		NetNS:      ns,
		Pod:        func() podmetrics.Pod { return s.podMetricsView(p) },
	}
	srv := podmetrics.Serve(ln, podmetrics.NewHandler(podmetrics.NewRegistry(src, logger), logger), logger)
	stop := func() {
		srv.Close()
		ns.Close()
	}
	s.shutdown.RegisterCallback(func(context.Context) error { stop(); return nil })
	log.G(ctx).WithField("port", p.cfg.Port).WithField("netns", path).Info("pod metrics endpoint serving in the pod's network namespace")
	return stop, nil
}

// podMetricsView is the pod as a scrape sees it; no I/O.
func (s *service) podMetricsView(p *podMetricsPlan) podmetrics.Pod {
	view := podmetrics.Pod{Namespace: p.namespace, Name: p.name}
	// The log collector belongs to Create; a scrape during a Create goes
	// without log figures rather than wait for it.
	if s.createMu.TryLock() {
		if l := s.logs; l != nil {
			st := l.collector.Stats()
			view.Logs = &st
		}
		s.createMu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.containers {
		pc := podmetrics.Container{Name: c.name}
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
		}
		if c.stdio != nil {
			st := c.stdio.Stats()
			pc.Stdio = &st
		}
		view.Containers = append(view.Containers, pc)
	}
	return view
}
