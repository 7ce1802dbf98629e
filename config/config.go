// Package config reads the cci-shim node configuration (TOML), shared by the
// shim, the node agent and the bench harness.
//
// It is for node-wide settings an operator owns: which backend runs pods, where
// state lives, the size and throttles of every pod's rootfs. It is not for
// per-pod settings: those come from pod annotations and are validated by the
// sandbox package, and they can never raise a limit set here.
package config

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/iothrottle"
)

// Backend kinds.
const (
	BackendRunc   = "runc"
	BackendKata   = "kata"
	BackendGVisor = "gvisor"
)

// Shims that can drive runsc for the gvisor backend.
const (
	// GVisorShimRunc is containerd's runc shim with runsc as its OCI
	// runtime binary.
	GVisorShimRunc = "runc"
	// GVisorShimRunsc is gVisor's own containerd-shim-runsc-v1.
	GVisorShimRunsc = "runsc"
)

// Config is the node configuration. The zero value is not useful; use Default
// or Load.
type Config struct {
	// StateDir holds per-pod state: the backend's bundles, interposed stdio
	// FIFOs and pod log volumes. Default /run/cci-shim.
	StateDir string     `toml:"state_dir"`
	Backend  Backend    `toml:"backend"`
	Rootfs   Rootfs     `toml:"rootfs"`
	Policy   Policy     `toml:"policy"`
	Throttle Throttle   `toml:"throttle"`
	Logs     Logs       `toml:"logs"`
	GPU      gpu.Config `toml:"gpu"`
}

// Logs configures the pod file-log collector (R15-R19). Destinations are
// node settings: a pod picks "file" or "forward", never an address.
type Logs struct {
	// FileDir receives the "file" destination: one JSON-lines file per pod,
	// <namespace>_<pod>_<uid>.jsonl. Default /var/log/cci-shim.
	FileDir string `toml:"file_dir"`
	// ForwardAddress is the Fluent Bit / Fluentd Forward endpoint,
	// "tcp://host:port" or "unix:///path". Empty: "forward" is refused.
	ForwardAddress string `toml:"forward_address"`
	// ForwardRequireAck asks the endpoint to acknowledge every chunk
	// (require_ack_response): at-least-once delivery. Default true.
	ForwardRequireAck bool `toml:"forward_require_ack"`
	// PollIntervalMS is the discovery poll (R16), the safety net under
	// inotify. Default 5000.
	PollIntervalMS int `toml:"poll_interval_ms"`
	// VolumeSizeBytes is the size of each pod's log volume: an ext4 image
	// on disk under policy.volume_dir (never the state_dir tmpfs), so a
	// pod cannot fill the host's memory or disk with log files. Default
	// 1 GiB.
	VolumeSizeBytes int64 `toml:"volume_size_bytes"`
}

// Throttle holds the node's I/O limits. MB means 10^6 bytes: 6 MB/s is
// 6000000 bytes per second. 0 turns a limit off. Pod annotations may lower
// a limit, never raise it.
type Throttle struct {
	// Rootfs limits apply to each pod's rootfs block device (R8).
	RootfsReadBps   uint64 `toml:"rootfs_read_bps"`
	RootfsWriteBps  uint64 `toml:"rootfs_write_bps"`
	RootfsReadIOPS  uint64 `toml:"rootfs_read_iops"`
	RootfsWriteIOPS uint64 `toml:"rootfs_write_iops"`
	// StdioBps is each container's stdout+stderr forwarding rate (R14),
	// lossless: a faster writer is slowed down.
	StdioBps int64 `toml:"stdio_bps"`
	// RootfsBurst* are each rootfs device's start burst (R8 beyond): I/O
	// at full speed until this many bytes or operations (read+write) are
	// spent or this many seconds have passed, then the limits above.
	// Defaults 1000000000, 100000, 60; 0 in any turns the burst off.
	RootfsBurstBytes   uint64 `toml:"rootfs_burst_bytes"`
	RootfsBurstOps     uint64 `toml:"rootfs_burst_ops"`
	RootfsBurstSeconds uint64 `toml:"rootfs_burst_seconds"`
}

// NodeLimits converts the section for the iothrottle package.
func (t Throttle) NodeLimits() iothrottle.NodeLimits {
	return iothrottle.NodeLimits{
		Rootfs: iothrottle.DeviceLimits{ReadBps: t.RootfsReadBps, WriteBps: t.RootfsWriteBps,
			ReadIOPS: t.RootfsReadIOPS, WriteIOPS: t.RootfsWriteIOPS},
		StdioBytesPerSec: t.StdioBps,
		RootfsBurst: iothrottle.StartBurst{Bytes: t.RootfsBurstBytes, Ops: t.RootfsBurstOps,
			Window: time.Duration(t.RootfsBurstSeconds) * time.Second},
	}
}

// Policy holds what the pod policy needs to know about the node.
type Policy struct {
	// VolumeDir holds each pod's host-side volumes: the /dev/shm tmpfs and
	// hostPath replacements (disk-backed ones are ext4 images here, so it
	// must be on disk). Default /var/lib/cci-shim/pods.
	VolumeDir string `toml:"volume_dir"`
	// KubeletRoot is kubelet's --root-dir: bind mounts from this pod's
	// directory under it are volumes, not hostPath. Default /var/lib/kubelet.
	KubeletRoot string `toml:"kubelet_root"`
	// ContainerdRoot and ContainerdState are containerd's root and state
	// dirs, where CRI keeps the pod's own files (hosts, resolv.conf, shm).
	ContainerdRoot  string `toml:"containerd_root"`
	ContainerdState string `toml:"containerd_state"`
	// ShmSizeBytes is the default /dev/shm size (R10). Default 64 MiB.
	ShmSizeBytes int64 `toml:"shm_size_bytes"`
	// InsecureAllowHostRootCapabilities lets capabilities that are host root
	// (CAP_SYS_ADMIN, CAP_SYS_MODULE, ... see sandbox.HostRootCapabilities)
	// through on a backend that shares the host kernel (runc): development
	// only; every container that uses it is logged. Default false (R25).
	InsecureAllowHostRootCapabilities bool `toml:"insecure_allow_host_root_capabilities"`
	// AllowCompatSyscalls keeps the 32-bit syscall ABIs (x86 and x32 on
	// amd64) in the seccomp filter of containers on a backend that shares
	// the host kernel (runc), for pods that run 32-bit binaries. Default
	// false: only the native ABI is admitted, and a 32-bit syscall ends the
	// process with SIGSYS (R25).
	AllowCompatSyscalls bool `toml:"allow_compat_syscalls"`
}

// Backend selects the sandbox runtime the shim fronts.
type Backend struct {
	// Kind is "kata" (production), "gvisor" (a user-space kernel per pod,
	// runs on every machine) or "runc" (development only).
	Kind string `toml:"kind"`
	// Binary is the backend shim: a name looked up in PATH or an absolute
	// path. Defaults: containerd-shim-runc-v2 for runc and for gvisor with
	// gvisor.shim "runc", containerd-shim-runsc-v1 for gvisor with
	// gvisor.shim "runsc", containerd-shim-kata-v2 for kata.
	Binary string `toml:"binary"`
	// ConfigPath is handed to Kata as its configuration file
	// (configuration.toml). Kata only.
	ConfigPath string `toml:"config_path"`
	// RuncRoot is runc's state root. runc only. Default <state_dir>/runc.
	RuncRoot string `toml:"runc_root"`
	// Debug starts the backend shim with debug logging (and, for shims
	// that have one, its debug socket). Off by default, whatever
	// containerd's own log level.
	Debug bool `toml:"debug"`
	// GVisor configures runsc. gvisor only.
	GVisor GVisor `toml:"gvisor"`
}

// GVisor configures the gvisor backend. Every runsc flag comes from here,
// never from a pod.
type GVisor struct {
	// Shim is what drives runsc: "runc" (default; containerd's runc shim
	// with runsc as its OCI runtime) or "runsc" (gVisor's own
	// containerd-shim-runsc-v1, given a runsc.toml the shim writes).
	Shim string `toml:"shim"`
	// Runsc is the runsc binary, in PATH or absolute. Default "runsc".
	Runsc string `toml:"runsc"`
	// Helper is cci-runsc, which the runc shim runs as its OCI runtime
	// (shim "runc" only): absolute, or a name looked up beside the cci
	// shim's own binary, then in PATH. Default "cci-runsc".
	Helper string `toml:"helper"`
	// Root is runsc's state root. Default <state_dir>/runsc.
	Root string `toml:"root"`
	// Platform is how the sentry traps system calls: "ptrace" (default),
	// "kvm" or "systrap" (runsc 2023 and later).
	Platform string `toml:"platform"`
	// Network is "sandbox" (default: gVisor's network stack on the pod's
	// CNI network namespace) or "none" (loopback only). "host" is refused.
	Network string `toml:"network"`
	// NVProxy lets GPU pods use the host driver through gVisor's nvproxy
	// (R11; runsc 2023 and later). Off: GPU pods are refused.
	NVProxy bool `toml:"nvproxy"`
	// DebugLogDir, when set, makes runsc write debug logs there (one file
	// per command and sandbox).
	DebugLogDir string `toml:"debug_log_dir"`
}

// Rootfs describes every pod's writable root filesystem (R7).
type Rootfs struct {
	// SizeBytes is the block device size: devmapper base_image_size or the
	// blockfile scratch file. Default 20 GiB.
	SizeBytes int64 `toml:"size_bytes"`
}

// Default returns the documented defaults (README's table and
// packaging/cci-shim/config.toml agree with it; a test keeps them in step).
// Backend.Kind is "runc" here for configurations built in code; a node
// config file must set backend.kind itself (see Load).
func Default() Config {
	return Config{
		StateDir: "/run/cci-shim",
		Backend:  Backend{Kind: BackendRunc},
		Rootfs:   Rootfs{SizeBytes: 20 << 30},
		Throttle: Throttle{
			RootfsReadBps: iothrottle.DefaultRootfsBps, RootfsWriteBps: iothrottle.DefaultRootfsBps,
			RootfsReadIOPS: iothrottle.DefaultRootfsIOPS, RootfsWriteIOPS: iothrottle.DefaultRootfsIOPS,
			StdioBps:         iothrottle.DefaultStdioBytesPerSec,
			RootfsBurstBytes: iothrottle.DefaultRootfsBurstBytes, RootfsBurstOps: iothrottle.DefaultRootfsBurstOps,
			RootfsBurstSeconds: uint64(iothrottle.DefaultRootfsBurstWindow / time.Second),
		},
		Logs: Logs{FileDir: "/var/log/cci-shim", ForwardRequireAck: true, PollIntervalMS: 5000, VolumeSizeBytes: 1 << 30},
		Policy: Policy{
			VolumeDir:       "/var/lib/cci-shim/pods",
			KubeletRoot:     "/var/lib/kubelet",
			ContainerdRoot:  "/var/lib/containerd",
			ContainerdState: "/run/containerd",
			ShmSizeBytes:    64 << 20,
		},
	}
}

func (c *Config) finish() error {
	switch c.Backend.Kind {
	case BackendRunc:
		if c.Backend.Binary == "" {
			c.Backend.Binary = "containerd-shim-runc-v2"
		}
		if c.Backend.ConfigPath != "" {
			return fmt.Errorf("backend.config_path is for kata; backend.kind is %q", c.Backend.Kind)
		}
	case BackendKata:
		if c.Backend.Binary == "" {
			c.Backend.Binary = "containerd-shim-kata-v2"
		}
		if c.Backend.RuncRoot != "" {
			return fmt.Errorf("backend.runc_root is for runc; backend.kind is %q", c.Backend.Kind)
		}
	case BackendGVisor:
		// Its keys are checked below, once state_dir is known good.
	default:
		return fmt.Errorf("backend.kind %q: allowed values are %q, %q and %q", c.Backend.Kind, BackendRunc, BackendGVisor, BackendKata)
	}
	if c.Backend.Kind != BackendGVisor && c.Backend.GVisor != (GVisor{}) {
		return fmt.Errorf("backend.gvisor is for gvisor; backend.kind is %q", c.Backend.Kind)
	}
	if !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("state_dir %q: must be an absolute path", c.StateDir)
	}
	if c.Backend.Kind == BackendRunc && c.Backend.RuncRoot == "" {
		c.Backend.RuncRoot = filepath.Join(c.StateDir, "runc")
	}
	if c.Backend.Kind == BackendGVisor {
		if err := c.finishGVisor(); err != nil {
			return err
		}
	}
	for key, dir := range map[string]string{"policy.volume_dir": c.Policy.VolumeDir, "policy.kubelet_root": c.Policy.KubeletRoot,
		"policy.containerd_root": c.Policy.ContainerdRoot, "policy.containerd_state": c.Policy.ContainerdState} {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("%s %q: must be an absolute path", key, dir)
		}
	}
	if !filepath.IsAbs(c.Logs.FileDir) {
		return fmt.Errorf("logs.file_dir %q: must be an absolute path", c.Logs.FileDir)
	}
	if c.Logs.VolumeSizeBytes < 16<<20 {
		return fmt.Errorf("logs.volume_size_bytes %d: must be at least 16777216 (16 MiB)", c.Logs.VolumeSizeBytes)
	}
	if c.Logs.PollIntervalMS <= 0 {
		return fmt.Errorf("logs.poll_interval_ms %d: must be positive", c.Logs.PollIntervalMS)
	}
	if _, err := iothrottle.StartBurstFromConfig(c.Throttle.RootfsBurstBytes, c.Throttle.RootfsBurstOps, c.Throttle.RootfsBurstSeconds); err != nil {
		return err
	}
	if c.Throttle.StdioBps < 0 {
		return fmt.Errorf("throttle.stdio_bps %d: must be 0 (off) or positive", c.Throttle.StdioBps)
	}
	if c.Policy.ShmSizeBytes <= 0 {
		return fmt.Errorf("policy.shm_size_bytes %d: must be positive", c.Policy.ShmSizeBytes)
	}
	c.GPU = c.GPU.WithDefaults()
	if c.Rootfs.SizeBytes <= 0 {
		return fmt.Errorf("rootfs.size_bytes %d: must be positive", c.Rootfs.SizeBytes)
	}
	return nil
}

// LogSpoolDir is where pod log volumes wait when their collector could not
// deliver everything at the pod's end; cci-agent delivers them. It is on
// policy.volume_dir's filesystem, so that spooling a volume is a rename.
func (c Config) LogSpoolDir() string { return filepath.Join(c.Policy.VolumeDir, "logspool") }

// finishGVisor fills the gvisor backend's defaults and validates its keys.
func (c *Config) finishGVisor() error {
	b, g := &c.Backend, &c.Backend.GVisor
	if b.ConfigPath != "" || b.RuncRoot != "" {
		return fmt.Errorf("backend.config_path and backend.runc_root are not for gvisor: use backend.gvisor.root")
	}
	switch g.Shim {
	case "", GVisorShimRunc:
		g.Shim = GVisorShimRunc
		if b.Binary == "" {
			b.Binary = "containerd-shim-runc-v2"
		}
	case GVisorShimRunsc:
		if b.Binary == "" {
			b.Binary = "containerd-shim-runsc-v1"
		}
	default:
		return fmt.Errorf("backend.gvisor.shim %q: allowed values are %q and %q", g.Shim, GVisorShimRunc, GVisorShimRunsc)
	}
	if g.Runsc == "" {
		g.Runsc = "runsc"
	}
	if g.Helper == "" {
		g.Helper = "cci-runsc"
	}
	if g.Root == "" {
		g.Root = filepath.Join(c.StateDir, "runsc")
	}
	if !filepath.IsAbs(g.Root) {
		return fmt.Errorf("backend.gvisor.root %q: must be an absolute path", g.Root)
	}
	switch g.Platform {
	case "":
		g.Platform = "ptrace"
	case "ptrace", "kvm", "systrap":
	default:
		return fmt.Errorf("backend.gvisor.platform %q: allowed values are \"ptrace\", \"kvm\" and \"systrap\"", g.Platform)
	}
	switch g.Network {
	case "":
		g.Network = "sandbox"
	case "sandbox", "none":
	default:
		return fmt.Errorf("backend.gvisor.network %q: allowed values are \"sandbox\" and \"none\" (host would share the node's network stack)", g.Network)
	}
	if g.DebugLogDir != "" && !filepath.IsAbs(g.DebugLogDir) {
		return fmt.Errorf("backend.gvisor.debug_log_dir %q: must be an absolute path", g.DebugLogDir)
	}
	return nil
}
