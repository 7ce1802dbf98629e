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

func newService(ic *plugin.InitContext) (any, error) {
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
	cfg, err := config.Load("")
	if err != nil {
		return nil, err
	}
	adapter, err := backend.New(cfg)
	if err != nil {
		return nil, err
	}
	// The backend's runtime options are the node's: marshalled once, sent
	// on the backend's start and on every Create.
	options, err := adapter.Options()
	if err != nil {
		return nil, err
	}
	address := os.Getenv(envAddress)
	if address == "" {
		return nil, fmt.Errorf("%s is not set: the shim must be started through its start subcommand", envAddress)
	}
	pod := flagValue("id")
	s := &service{
		ctx:        ic.Context,
		cfg:        cfg,
		adapter:    adapter,
		traits:     adapter.Traits(),
		publisher:  pp.(shim.Publisher),
		shutdown:   ss.(shutdown.Service),
		podDir:     filepath.Join(cfg.StateDir, ns, pod),
		volumeDir:  filepath.Join(cfg.Policy.VolumeDir, ns, pod),
		gpuKey:     ledgerKey(ns, pod),
		address:    address,
		containers: map[string]*container{},
		failpoints: loadFailpoints(),
		launch: launch{
			binary:           adapter.Binary(),
			namespace:        ns,
			grpcAddress:      ic.Properties[plugins.PropertyGRPCAddress],
			ttrpcAddress:     strings.TrimPrefix(address, "unix://"),
			containerdBinary: os.Getenv(envContainerdBinary),
			socketDir:        os.Getenv(envSocketDir),
			debug:            cfg.Backend.Debug,
			options:          options,
		},
	}
	if err := os.MkdirAll(s.podDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir %q: creating pod state dir: %w", cfg.StateDir, err)
	}
	l := s.launch
	env := releaseEnv{stateDir: cfg.StateDir, volumeDir: cfg.Policy.VolumeDir, gpu: cfg.GPU,
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
	if s.gpus, err = newGPUs(cfg, s.traits.GPU); err != nil {
		return nil, err
	}
	s.relay = newEventRelay(ic.Context, s.publisher, s.drain)
	go s.writeStatsLoop(ic.Context)
	return s, nil
}
