// Package shim is the containerd-facing side of the cci runtime: the shim
// manager (start/delete), the Task service containerd calls, the launcher and
// client of the backend shim it fronts, the stdio interposition and the relay
// of the backend's events.
//
// It is the only package that speaks ttrpc. The platform's rules live in the
// leaf packages (sandbox, iothrottle, logfwd, gpu, shm), which this package
// calls on Create, Exec and Delete; it holds no policy of its own.
package shim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

func init() {
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn:   newService,
	})
}

// daemonMaxProcs is the number of Ps the pod's shim daemon runs Go code
// on. containerd starts `shim start` with GOMAXPROCS=2, which the daemon
// inherits and hands on to runc and runsc; it is set here, in process, so
// that their environment stays as it was. The daemon is I/O bound: its
// goroutines wait on ttrpc, FIFOs, timers and runc, and each stream is
// copied by one goroutine. A second P only adds thread wakeups, which a
// guest such as this project's PVM machines makes dear; `ccibench shim`
// shows them in the daemon's threads' slices. It also bounds the host CPU
// a pod's output can make its shim burn to one core.
const daemonMaxProcs = 1

func newService(ic *plugin.InitContext) (any, error) {
	runtime.GOMAXPROCS(daemonMaxProcs)
	pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
	if err != nil {
		return nil, err
	}
	ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
	if err != nil {
		return nil, err
	}
	ns, err := namespaces.NamespaceRequired(ic.Context)
	if err != nil {
		return nil, err
	}
	cfg, src, err := config.LoadSource("")
	if err != nil {
		return nil, err
	}
	adapter, err := backend.New(cfg)
	if err != nil {
		return nil, err
	}
	address := os.Getenv(envAddress)
	if address == "" {
		return nil, fmt.Errorf("%s is not set: the shim must be started through its start subcommand", envAddress)
	}
	s, err := newTaskService(ic.Context, serviceDeps{
		cfg:              cfg,
		cfgPath:          src.Path,
		adapter:          adapter,
		publisher:        pp.(shim.Publisher),
		shutdown:         ss.(shutdown.Service),
		namespace:        ns,
		pod:              flagValue("id"),
		address:          address,
		grpcAddress:      ic.Properties[plugins.PropertyGRPCAddress],
		containerdBinary: os.Getenv(envContainerdBinary),
		socketDir:        os.Getenv(envSocketDir),
		failpoints:       loadFailpoints(),
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// serviceDeps is what a pod's task service is built from.
type serviceDeps struct {
	cfg              config.Config
	cfgPath          string // the node config file cfg came from, for errors
	adapter          backend.Adapter
	publisher        shim.Publisher
	shutdown         shutdown.Service
	namespace, pod   string
	address          string // our own socket
	grpcAddress      string // containerd's
	containerdBinary string
	socketDir        string
	failpoints       failpoints
	// startBackend starts the pod's backend shim; nil is the real one
	// (its start subcommand). Tests hand in an in-process backend.
	startBackend backendStarter
}

// backendStarter starts a backend shim; see startBackend.
type backendStarter func(ctx context.Context, l *launch, recordStarted func(address string) error, onClose func()) (*backendShim, error)

// newTaskService builds the task service of one pod: its state, its owner
// (taking over what an earlier process of the pod recorded) and the event
// relay.
func newTaskService(ctx context.Context, d serviceDeps) (*service, error) {
	// The backend's runtime options are the node's: marshalled once, sent
	// on the backend's start and on every Create.
	options, err := d.adapter.Options()
	if err != nil {
		return nil, err
	}
	cfg := d.cfg
	s := &service{
		ctx:          ctx,
		cfg:          cfg,
		cfgPath:      d.cfgPath,
		adapter:      d.adapter,
		traits:       d.adapter.Traits(),
		publisher:    d.publisher,
		shutdown:     d.shutdown,
		podDir:       filepath.Join(cfg.StateDir, d.namespace, d.pod),
		volumeDir:    filepath.Join(cfg.Policy.VolumeDir, d.namespace, d.pod),
		gpuKey:       ledgerKey(d.namespace, d.pod),
		address:      d.address,
		containers:   map[string]*container{},
		statsKick:    make(chan struct{}, 1),
		failpoints:   d.failpoints,
		startBackend: d.startBackend,
		launch: launch{
			binary:           d.adapter.Binary(),
			namespace:        d.namespace,
			grpcAddress:      d.grpcAddress,
			ttrpcAddress:     strings.TrimPrefix(d.address, "unix://"),
			containerdBinary: d.containerdBinary,
			socketDir:        d.socketDir,
			debug:            cfg.Backend.Debug,
			options:          options,
		},
	}
	s.relay = newEventRelay(ctx, s.publisher, s.drain, s.exited)
	if s.startBackend == nil {
		s.startBackend = startBackend
		if s.traits.InProcess {
			s.startBackend = startInProcessBackend(s.relay)
		}
	}
	// Both become host paths: containerd validates them, and so do we.
	if err := sandbox.ValidateIdentifier("containerd namespace", d.namespace); err != nil {
		return nil, err
	}
	if err := sandbox.ValidateIdentifier("pod id", d.pod); err != nil {
		return nil, err
	}
	s.pod = newPodPolicy(s.podDir)
	if err := os.MkdirAll(s.podDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir %q: creating pod state dir: %w", cfg.StateDir, err)
	}
	l := s.launch
	env := releaseEnv{stateDir: cfg.StateDir, volumeDir: cfg.Policy.VolumeDir, spoolDir: cfg.LogSpoolDir(), gpu: cfg.GPU,
		deleteTask: func(ctx context.Context, r resource) error {
			dl := l
			dl.id, dl.bundle = r.Container, r.Path
			_, err := deleteBackend(ctx, &dl)
			return err
		}}
	if s.owner, err = loadOwner(s.podDir, releaseRecord(env)); err != nil {
		return nil, err
	}
	self, err := identify(os.Getpid())
	if err != nil {
		return nil, err
	}
	// However the shim ends (Shutdown, the backend dying, a signal), its
	// socket goes with it; after a crash the delete subcommand removes it
	// from this record.
	address := d.address
	if err := s.owner.add(resource{Kind: resShim, Proc: self, Address: address}, func(context.Context) error {
		removeSocket(address)
		return nil
	}); err != nil {
		return nil, err
	}
	s.shutdown.RegisterCallback(func(context.Context) error {
		removeSocket(address)
		return nil
	})
	if s.oomFloor, err = sandbox.ReadOOMScoreAdjFloor(); err != nil {
		return nil, err
	}
	if s.hostNamespaces, err = sandbox.ReadHostNamespaces(); err != nil {
		return nil, err
	}
	if s.gpus, err = newGPUs(cfg, s.traits.GPU); err != nil {
		return nil, err
	}
	go s.writeStatsLoop(ctx)
	return s, nil
}
