package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/sandbox"
)

// logsConfigFile, in the pod state dir, holds the collector's config, so the
// delete subcommand can drain the log volume after this shim died.
const (
	logsConfigFile = "logs.json"
	logsDrainLimit = 5 * time.Second
)

// podLogs is the pod's file-log collector (R15-R20). The pod's log volume is
// a size-limited ext4 image on disk, loop-mounted under the pod's volume
// dir; each declared container log directory is a bind mount of one of its
// sub-directories, so the host reads what the container writes, with runc
// and with a sandbox (shared into it) alike.
type podLogs struct {
	cfg       logfwd.Config
	collector *logfwd.Collector
	cancel    context.CancelFunc
	done      chan struct{}
}

// logVolume is the pod's log volume: a disk image of the node's configured
// size, mounted among the pod's volumes (released with them).
func (s *service) logVolume() sandbox.Dir {
	return sandbox.Dir{
		Path:  filepath.Join(s.volumeDir, "volumes", "logs"),
		Image: filepath.Join(s.volumeDir, "images", "logs.img"),
		Size:  s.cfg.Logs.VolumeSizeBytes,
	}
}

// collectorConfig builds the collector's config for a pod's policies. The
// sink is named from containerd's namespace and the pod's id, both
// identifiers containerd validated: tenant-chosen names only appear inside
// the records.
func collectorConfig(cfg config.Config, root, podDir, namespace, podID string, pod *sandbox.Pod, policies []logfwd.Policy) (logfwd.Config, error) {
	id := logfwd.PodIdentity{Namespace: pod.Namespace, Name: pod.SandboxName, UID: pod.UID}
	if id.Name == "" {
		id.Name = podID
	}
	c := logfwd.Config{
		Root:           root,
		Watches:        logfwd.Watches(policies),
		Pod:            id,
		CheckpointPath: filepath.Join(podDir, "logs.checkpoint"),
		PollInterval:   time.Duration(cfg.Logs.PollIntervalMS) * time.Millisecond,
	}
	for _, w := range c.Watches {
		switch w.Destination {
		case logfwd.DestinationForward:
			if cfg.Logs.ForwardAddress == "" {
				return c, fmt.Errorf("annotation %s: destination %q is not offered on this node; allowed: %q: %w",
					logfwd.AnnotationPolicies, w.Destination, logfwd.DestinationFile, errdefs.ErrInvalidArgument)
			}
			c.Forward = &logfwd.ForwardConfig{Address: cfg.Logs.ForwardAddress, RequireAck: cfg.Logs.ForwardRequireAck}
		default:
			name, err := logfwd.SinkFileName(namespace, podID)
			if err != nil {
				return c, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
			}
			c.FileSink = &logfwd.FileSinkConfig{Dir: cfg.Logs.FileDir, Name: name}
		}
	}
	return c, nil
}

// setupLogs starts the pod's collector at the first container that carries
// the policy annotation, and bind-mounts this container's log directories.
// Preconditions: createMu held.
func (s *service) setupLogs(ctx context.Context, spec *specs.Spec, pod *sandbox.Pod) error {
	value, ok := spec.Annotations[logfwd.AnnotationPolicies]
	if !ok {
		return nil
	}
	policies, err := logfwd.ParsePolicies(value)
	if err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := checkLogMounts(pod.Name(), spec, logfwd.Watches(policies)); err != nil {
		return err
	}
	if s.logs == nil {
		vol := s.logVolume()
		cfg, err := collectorConfig(s.cfg, vol.Path, s.podDir, s.launch.namespace, filepath.Base(s.podDir), pod, policies)
		if err != nil {
			return err
		}
		if _, err := sandbox.Prepare(&sandbox.Plan{PodDir: s.volumeDir, Dirs: []sandbox.Dir{vol}}, runOutput); err != nil {
			return fmt.Errorf("preparing the pod's log volume: %w", err)
		}
		if err := s.startLogs(ctx, cfg); err != nil {
			return err
		}
	}
	uid, gid := 0, 0
	if spec.Process != nil {
		uid, gid = int(spec.Process.User.UID), int(spec.Process.User.GID)
	}
	for _, w := range s.logs.cfg.Watches {
		if w.Container != pod.Name() {
			continue
		}
		host := logfwd.HostDir(s.logs.cfg.Root, w.Container, w.Dir)
		if err := os.Lchown(host, uid, gid); err != nil {
			return fmt.Errorf("preparing log volume: %w", err)
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: w.Dir, Type: "bind", Source: host,
			Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}})
	}
	return nil
}

// updateLogs applies a changed log policy to the running collector. New
// directories must already be mounted in the container (they are for any
// container the policy named at Create); the collector follows the new
// globs from now on.
func (s *service) updateLogs(ctx context.Context, annotations map[string]string) error {
	value, ok := annotations[logfwd.AnnotationPolicies]
	if !ok {
		return nil
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if s.logs == nil {
		return fmt.Errorf("annotation %s: the pod was created without a log policy; set it at creation: %w",
			logfwd.AnnotationPolicies, errdefs.ErrFailedPrecondition)
	}
	policies, err := logfwd.ParsePolicies(value)
	if err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	watches := logfwd.Watches(policies)
	for _, w := range watches {
		if err := os.MkdirAll(logfwd.HostDir(s.logs.cfg.Root, w.Container, w.Dir), 0o755); err != nil {
			return fmt.Errorf("creating log volume: %w", err)
		}
	}
	if err := s.logs.collector.UpdateWatches(ctx, watches); err != nil {
		return fmt.Errorf("updating log policy: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	s.logs.cfg.Watches = watches
	if data, err := json.Marshal(s.logs.cfg); err == nil {
		writeFileAtomic(filepath.Join(s.podDir, logsConfigFile), data)
	}
	log.G(ctx).WithField("watches", len(watches)).Info("log policy updated")
	return nil
}

// startLogs creates every declared log directory on the log volume,
// persists the collector's config and runs the collector for the pod's
// life. The owner's record drains it (bounded) when the pod goes.
// Preconditions: createMu held.
func (s *service) startLogs(ctx context.Context, cfg logfwd.Config) error {
	cfgPath := filepath.Join(s.podDir, logsConfigFile)
	if err := s.owner.add(resource{Kind: resLogs, Path: cfgPath}, s.stopLogs); err != nil {
		return err
	}
	for _, w := range cfg.Watches {
		if err := os.MkdirAll(logfwd.HostDir(cfg.Root, w.Container, w.Dir), 0o755); err != nil {
			return fmt.Errorf("creating log volume: %w", err)
		}
	}
	if cfg.FileSink != nil {
		if err := os.MkdirAll(cfg.FileSink.Dir, 0o755); err != nil {
			return fmt.Errorf("creating log sink dir: %w", err)
		}
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(cfgPath, data); err != nil {
		return err
	}
	c, err := logfwd.New(cfg, collectorLogger())
	if err != nil {
		return fmt.Errorf("starting log collector: %w", err)
	}
	runCtx, cancel := context.WithCancel(s.ctx)
	l := &podLogs{cfg: cfg, collector: c, cancel: cancel, done: make(chan struct{})}
	s.logs = l
	s.collector.Store(c)
	go func() {
		defer close(l.done)
		if err := c.Run(runCtx); err != nil {
			log.G(s.ctx).WithError(err).Error("log collector stopped")
		}
	}()
	log.G(ctx).WithField("watches", len(cfg.Watches)).Info("log collector started")
	return nil
}

// stopLogs reads the pod's log volume to its end and delivers it, within
// logsDrainLimit; what cannot be delivered in time stays behind its
// checkpoint. Then the collector stops. Preconditions: createMu held (it
// runs from the owner inside Create's undo or Shutdown).
func (s *service) stopLogs(ctx context.Context) error {
	l := s.logs
	if l == nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, logsDrainLimit)
	defer cancel()
	if err := l.collector.Drain(dctx); err != nil {
		log.G(ctx).WithError(err).Warn("draining pod logs")
		if errors.Is(err, logfwd.ErrNotDrained) {
			s.spoolLogs(ctx, l.cfg)
		}
	}
	l.cancel()
	select {
	case <-l.done:
	case <-time.After(logsDrainLimit):
		log.G(ctx).Warn("log collector did not stop")
	}
	s.logs = nil
	s.collector.Store(nil)
	return nil
}

// spoolLogs keeps what the pod's collector could not deliver: the log
// volume goes to the node's spool (logfwd.SpoolVolume) instead of away with
// the pod's other volumes, and cci-agent delivers the rest (R18).
func (s *service) spoolLogs(ctx context.Context, cfg logfwd.Config) {
	spoolVolume(ctx, s.logVolume(), s.cfg.LogSpoolDir(), s.launch.namespace, filepath.Base(s.podDir), cfg)
}

func spoolVolume(ctx context.Context, vol sandbox.Dir, dir, namespace, podID string, cfg logfwd.Config) {
	name, err := logfwd.SinkFileName(namespace, podID)
	if err == nil {
		err = mount.UnmountAll(vol.Path, unix.MNT_DETACH)
	}
	if err == nil {
		err = logfwd.SpoolVolume(dir, strings.TrimSuffix(name, ".jsonl"), vol.Image, cfg)
	}
	if err != nil {
		log.G(ctx).WithError(err).Error("spooling the pod's undelivered logs: they are lost with the pod")
		return
	}
	log.G(ctx).WithField("spool", dir).Warn("the pod's logs could not all be delivered; spooled for cci-agent to deliver")
}

// drainLogsAfterCrash is stopLogs for the delete subcommand: the collector
// died with the shim; a new one picks up from the checkpoint, and what it
// cannot deliver in time is spooled. cfgPath is <state>/<ns>/<pod>/logs.json.
func drainLogsAfterCrash(ctx context.Context, cfgPath, spool string) {
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return
	}
	var cfg logfwd.Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		log.G(ctx).WithError(err).Warn("reading log collector config")
		return
	}
	c, err := logfwd.New(cfg, collectorLogger())
	if err != nil {
		log.G(ctx).WithError(err).Warn("restarting log collector")
		return
	}
	defer c.Close()
	dctx, cancel := context.WithTimeout(ctx, logsDrainLimit)
	defer cancel()
	if err := c.Drain(dctx); err != nil {
		log.G(ctx).WithError(err).Warn("draining pod logs")
		if errors.Is(err, logfwd.ErrNotDrained) {
			// The volume is <pod volume dir>/volumes/logs, its image
			// <pod volume dir>/images/logs.img (logVolume).
			podVolumes := filepath.Dir(filepath.Dir(cfg.Root))
			vol := sandbox.Dir{Path: cfg.Root, Image: filepath.Join(podVolumes, "images", "logs.img")}
			podDir := filepath.Dir(cfgPath)
			spoolVolume(ctx, vol, spool, filepath.Base(filepath.Dir(podDir)), filepath.Base(podDir), cfg)
		}
	}
}

func collectorLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "logfwd")
}
