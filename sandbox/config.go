package sandbox

import (
	"path/filepath"

	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// DefaultCRINamespace is the containerd namespace containerd's CRI uses.
const DefaultCRINamespace = "k8s.io"

// DefaultCgroupRoot is the cgroup parent of the cgroups the shim chooses
// (standalone containers, and CRI pods without a kubelet pod cgroup).
const DefaultCgroupRoot = "/cci-shim"

// Config carries node settings and what the shim knows about the pod. Zero
// fields take the defaults of withDefaults, except PodDir, which is
// required; a zero field never weakens the policy (Isolation "" is treated
// as no isolation, a nil Namespaces resolver refuses every namespace path).
type Config struct {
	// PodDir is the pod's private state directory on the host (one per
	// sandbox). It should live on a disk filesystem: disk-backed volume
	// images are created under it; shm and Memory volumes are tmpfs mounts.
	PodDir string
	// PinDir is where pinned bind sources are mounted, a directory per
	// container (default PodDir/pins). It holds mount points only, so it
	// belongs on the state tmpfs: a file or directory made per mount on a
	// disk filesystem costs an inode allocation at every container start.
	PinDir string
	// KubeletRoot is kubelet's --root-dir (default /var/lib/kubelet).
	KubeletRoot string
	// ContainerdRoot and ContainerdState are containerd's root and state
	// (defaults /var/lib/containerd, /run/containerd); CRI keeps pod files
	// under <root|state>/io.containerd.grpc.v1.cri/sandboxes/<id>. Roots
	// other than these are recognised too (see platform.go); these stay an
	// allow-list of their own.
	ContainerdRoot  string
	ContainerdState string
	// ShimDirs are node directories that hold the shim's own state
	// (state_dir, volume_dir, log dirs): no tenant bind source and no
	// inferred kubelet or containerd root may lie in them.
	ShimDirs []string
	// Namespace is the container's containerd namespace (a containerd
	// identifier). Required.
	Namespace string
	// CRINamespace is the containerd namespace of containerd's CRI (default
	// k8s.io). Only there are CRI's identity annotations trusted enough to
	// recognise kubelet's and CRI's directories, kubelet's pod cgroups and
	// CNI network namespaces: whoever can create containers in that
	// namespace can already stop every pod of the node through containerd.
	// Everywhere else a spec gets only new namespaces, shim-chosen cgroups
	// and no host bind mounts but R4 replacements.
	CRINamespace string
	// CgroupRoot is the parent of shim-chosen cgroups (default /cci-shim).
	CgroupRoot string
	// Isolation is the backend's (sandbox/backend Traits().Isolation). On a
	// backend that does not isolate the host kernel, capabilities that
	// amount to host root are refused (R25) and a spec without seccomp gets
	// containerd's default profile.
	Isolation backend.Isolation
	// AllowHostRootCapabilities is the node option
	// policy.insecure_allow_host_root_capabilities: development only. When
	// it lets a capability through, Plan.Warnings says so.
	AllowHostRootCapabilities bool
	// AllowCompatSyscalls is the node option policy.allow_compat_syscalls:
	// on a backend sharing the host kernel, the seccomp filter keeps the
	// 32-bit syscall ABIs its profile lists, for pods that run 32-bit
	// binaries. By default only the native ABI is admitted.
	AllowCompatSyscalls bool
	// Namespaces resolves a namespace path to the namespace it names.
	Namespaces NamespaceResolver
	// HostNamespaces are the host's own namespaces (ReadHostNamespaces).
	HostNamespaces []NSRef
	// Pod is the pod's state as recorded when its sandbox was created (the
	// Plan.State of the sandbox's Apply, persisted by the shim). Required
	// for an app container of a pod; nil for a sandbox or a standalone
	// container, which create it.
	Pod *PodState
	// OOMScoreAdjFloor is the lowest oom_score_adj this host lets the shim
	// set (ReadOOMScoreAdjFloor reads it); specs are clamped to it.
	OOMScoreAdjFloor int
	// ShmSize is the default /dev/shm size (default 64 MiB).
	ShmSize int64
	// DefaultPodSize sizes a pod that declares no resources (default 1 core, 2 GiB).
	DefaultPodSize Resources
	// DefaultVolumeSize limits a disk replacement volume without sizeLimit
	// (default 10 GiB).
	DefaultVolumeSize int64
	// HostFS reads the size of the host filesystem at a platform source
	// (statfs of a Memory emptyDir at /dev/shm), opening it the way Pin
	// does. Nil uses the real one; tests pass a fake.
	HostFS func(src Pin) (size int64, tmpfs bool, err error)
}

func (c Config) withDefaults() Config {
	if c.PinDir == "" {
		c.PinDir = filepath.Join(c.PodDir, "pins")
	}
	if c.KubeletRoot == "" {
		c.KubeletRoot = "/var/lib/kubelet"
	}
	if c.ContainerdRoot == "" {
		c.ContainerdRoot = "/var/lib/containerd"
	}
	if c.ContainerdState == "" {
		c.ContainerdState = "/run/containerd"
	}
	if c.CRINamespace == "" {
		c.CRINamespace = DefaultCRINamespace
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = DefaultCgroupRoot
	}
	if c.DefaultPodSize == (Resources{}) {
		c.DefaultPodSize = Resources{MilliCPU: 1000, Memory: 2 * GiB}
	}
	if c.DefaultVolumeSize == 0 {
		c.DefaultVolumeSize = 10 * GiB
	}
	if c.HostFS == nil {
		c.HostFS = hostFS
	}
	return c
}

// trustCRI reports whether CRI's identity annotations are trusted for this
// container: it is in CRI's containerd namespace.
func (c *Config) trustCRI() bool { return c.Namespace != "" && c.Namespace == c.CRINamespace }
