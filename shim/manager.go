package shim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/log"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/internal/version"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// Environment our start subcommand hands to the shim process it spawns.
const (
	envAddress          = "CCI_SHIM_ADDRESS"
	envSocketDir        = "CCI_SHIM_SOCKET_DIR"
	envContainerdBinary = "CCI_SHIM_CONTAINERD_BINARY"
)

// configPathFile, in containerd's bundle, remembers a config path given in
// the runtime options, for the delete subcommand, which gets no options.
const configPathFile = "cci-config-path"

// defaultSocketDir is containerd's default when it names none.
const defaultSocketDir = "/run/containerd/s"

// NewManager returns the shim's start/delete/info implementation.
func NewManager(name string) shim.Shim { return &manager{name: name} }

type manager struct{ name string }

func (m *manager) Name() string { return m.name }

func (m *manager) Info(ctx context.Context, _ io.Reader) (*types.RuntimeInfo, error) {
	v := version.Get()
	return &types.RuntimeInfo{Name: m.name, Version: &types.RuntimeVersion{Version: v.Version, Revision: v.Revision}}, nil
}

// Start returns the address of the pod's cci shim, starting it for the first
// container of a pod. Containers of an existing pod (R1) get the address of
// the running shim. Our socket is derived from (containerd, namespace, pod)
// with a suffix, so it never collides with the backend's own derivation.
func (m *manager) Start(ctx context.Context, params *bootapi.BootstrapParams) (_ *bootapi.BootstrapResult, retErr error) {
	cfgPath, err := configPathFromOptions(params)
	if err != nil {
		return nil, err
	}
	cfg, src, err := config.LoadSource(cfgPath)
	if err != nil {
		return nil, err
	}
	// An unusable state dir would only show as a closed connection once the
	// spawned shim fails: say it here, with the file that set it.
	if err := cfg.PrepareStateDir(src.Path); err != nil {
		return nil, err
	}
	if _, err := backend.New(cfg); err != nil {
		return nil, err // R2: never fall back to another runtime
	}
	pod := podID(readAnnotations("config.json"), params.GetInstanceID())
	if err := sandbox.ValidateIdentifier("containerd namespace", params.GetNamespace()); err != nil {
		return nil, err
	}
	if err := sandbox.ValidateIdentifier("pod id (annotation "+annotationSandboxID+")", pod); err != nil {
		return nil, err
	}
	podDir := filepath.Join(cfg.StateDir, params.GetNamespace(), pod)
	if err := os.MkdirAll(podDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir %q (node config %s) is not usable: %w", cfg.StateDir, src.Path, err)
	}
	defer func() {
		if retErr != nil {
			os.Remove(podDir) // only if nothing was put there
		}
	}()
	socketDir := params.GetSocketDir()
	if socketDir == "" {
		socketDir = defaultSocketDir
	}
	address, err := shim.CreateSocketAddress(ctx, socketDir, params.GetContainerdGrpcAddress(), pod+"/cci", false)
	if err != nil {
		return nil, err
	}
	result := &bootapi.BootstrapResult{Version: 3, Protocol: "ttrpc", Address: address}
	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return nil, fmt.Errorf("creating shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			return result, nil // the pod's shim serves this container too
		}
		if err := shim.RemoveSocket(address); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return nil, fmt.Errorf("creating shim socket: %w", err)
		}
	}
	// The spawned shim serves this socket; closing our copy must not unlink it.
	socket.SetUnlinkOnClose(false)
	defer socket.Close()
	defer func() {
		if retErr != nil {
			shim.RemoveSocket(address)
		}
	}()
	f, err := socket.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()

	if cfgPath != "" {
		if err := os.WriteFile(configPathFile, []byte(cfgPath), 0o600); err != nil {
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", params.GetNamespace(), "-id", pod, "-address", params.GetContainerdGrpcAddress()}
	if params.GetLogLevel() <= bootapi.LogLevel_LOG_LEVEL_DEBUG {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(),
		envAddress+"="+address,
		envSocketDir+"="+socketDir,
		envContainerdBinary+"="+params.GetContainerdBinary(),
	)
	if cfgPath != "" {
		cmd.Env = append(cmd.Env, config.EnvPath+"="+cfgPath)
	}
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting shim: %w", err)
	}
	go cmd.Wait()
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		log.G(ctx).WithError(err).Warn("adjusting shim oom score")
	}
	return result, nil
}

// configPathFromOptions returns the config path CRI passes in the runtime
// options (ConfigPath, as for Kata), or "".
func configPathFromOptions(params *bootapi.BootstrapParams) (string, error) {
	var opts runtimeoptions.Options
	found, err := params.FindExtension(&opts)
	if err != nil || !found {
		return "", nil // other option types carry no config path
	}
	return opts.GetConfigPath(), nil
}

// Stop is the delete subcommand: containerd runs it when our shim died or
// never started. It reads the pod's owner from the state dir, deletes the
// container through the backend's own delete subcommand, releases the
// container's resources and, once the pod has no container left, the pod's:
// the same teardown Shutdown runs, from the records.
func (m *manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	status := shim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return status, err
	}
	cfgPath := ""
	if data, err := os.ReadFile(configPathFile); err == nil {
		cfgPath = string(data)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return status, err
	}
	pod := podID(readAnnotations("config.json"), id)
	if sandbox.ValidateIdentifier("containerd namespace", ns) != nil || sandbox.ValidateIdentifier("pod id", pod) != nil {
		return status, nil // the start subcommand refused it: nothing of it exists
	}
	podDir := filepath.Join(cfg.StateDir, ns, pod)
	if _, err := os.Stat(podDir); errors.Is(err, os.ErrNotExist) {
		return status, nil
	}
	l := launch{namespace: ns, grpcAddress: flagValue("address"), containerdBinary: flagValue("publish-binary")}
	if a, err := backend.New(cfg); err == nil {
		l.binary = a.Binary()
	}
	env := releaseEnv{stateDir: cfg.StateDir, volumeDir: cfg.Policy.VolumeDir, spoolDir: cfg.LogSpoolDir(), gpu: cfg.GPU,
		deleteTask: func(ctx context.Context, r resource) error {
			if l.binary == "" {
				return fmt.Errorf("backend shim %q not found: cannot delete task %s", cfg.Backend.Binary, r.Container)
			}
			dl := l
			dl.id, dl.bundle = r.Container, r.Path
			resp, err := deleteBackend(ctx, &dl)
			if err != nil {
				return err
			}
			if r.Container == id {
				status = shim.StopStatus{Pid: int(resp.Pid), ExitStatus: int(resp.ExitStatus), ExitedAt: resp.ExitedAt.AsTime()}
			}
			return nil
		}}
	o, err := loadOwner(podDir, releaseRecord(env))
	if err != nil {
		return status, err
	}
	// containerd runs this whenever a container's connection closes: after
	// each container's delete while the pod's shim serves the others, and
	// after a Shutdown whose teardown goes on after the reply. A shim that is
	// still alive owns what it has not released yet: while other containers
	// hold resources it is serving the pod, and this returns at once (the
	// pod's stop must not wait on it); on its last container it is finishing
	// its own teardown (every step of it bounded), which this waits for.
	if self, ok := o.find(resShim); ok && self.Proc.Pid != os.Getpid() && self.Proc.alive() {
		if others, err := o.containersOnDisk(); err == nil && slices.ContainsFunc(others, func(c string) bool { return c != id }) {
			log.G(ctx).WithField("pid", self.Proc.Pid).Debug("the pod's shim serves its other containers; leaving the container to it")
			return status, nil
		}
		if !self.Proc.waitGone(shimTeardownWait) {
			log.G(ctx).WithField("pid", self.Proc.Pid).Info("the pod's shim is still tearing down; leaving the pod to it")
			return status, nil
		}
		if _, err := os.Stat(podDir); errors.Is(err, os.ErrNotExist) {
			return status, nil // it released everything
		}
		if o, err = loadOwner(podDir, releaseRecord(env)); err != nil {
			return status, err
		}
	}
	if err := o.releaseContainer(ctx, id); err != nil {
		log.G(ctx).WithError(err).Warn("releasing container resources")
	}
	if left, err := o.containersOnDisk(); err == nil && len(left) == 0 {
		if err := o.releaseAll(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("releasing pod resources")
		}
		if o.empty() {
			os.RemoveAll(podDir)
		}
	}
	return status, nil
}

// shimTeardownWait is how long the delete subcommand waits for a live shim
// to end its own teardown before leaving the pod to it (containerd bounds
// the delete subcommand at a few seconds).
const shimTeardownWait = 3 * time.Second

// flagValue reads a flag that containerd's shim harness parsed.
func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}
