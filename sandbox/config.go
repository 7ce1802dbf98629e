package sandbox

// Config carries node settings. Zero fields take the defaults of
// DefaultConfig, except PodDir, which is required.
type Config struct {
	// PodDir is the pod's private state directory on the host (one per
	// sandbox). It should live on a disk filesystem: disk-backed volume
	// images are created under it; shm and Memory volumes are tmpfs mounts.
	PodDir string
	// KubeletRoot is kubelet's --root-dir (default /var/lib/kubelet).
	KubeletRoot string
	// ContainerdRoot and ContainerdState are containerd's root and state
	// (defaults /var/lib/containerd, /run/containerd); CRI keeps pod files
	// under <root|state>/io.containerd.grpc.v1.cri/sandboxes/<id>.
	ContainerdRoot  string
	ContainerdState string
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
	// HostFS reads the size of a host filesystem (statfs). Nil uses the
	// real one (shm.HostSize); tests pass a fake.
	HostFS func(path string) (size int64, tmpfs bool, err error)
}

func (c Config) withDefaults() Config {
	if c.KubeletRoot == "" {
		c.KubeletRoot = "/var/lib/kubelet"
	}
	if c.ContainerdRoot == "" {
		c.ContainerdRoot = "/var/lib/containerd"
	}
	if c.ContainerdState == "" {
		c.ContainerdState = "/run/containerd"
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
