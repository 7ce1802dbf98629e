package backend

// Traits are the backend-specific facts the shim acts on. The shim asks the
// adapter instead of testing its kind: every decision that differs between
// runc, gVisor and Kata is made here.
type Traits struct {
	// Isolation says what stands between a container and the host kernel
	// (R25). On IsolationNone, capabilities that amount to host root are
	// refused unless the node explicitly allows them for development.
	Isolation Isolation
	// RootfsThrottle says which host cgroup gets the rootfs device limits
	// (R8): the container's own (its processes do the I/O) or the pod
	// sandbox's (the VMM or gVisor's sentry and gofer do it for every
	// container of the pod).
	RootfsThrottle ThrottlePlacement
	// RootfsSyncWrites says the sandbox turns every write of the pod, direct
	// ones included, into a buffered write to the host's page cache (gVisor
	// does), whose writeback cgroup v1 charges to no one: on cgroup v1 the
	// shim mounts a block-device rootfs with SyncMounts, so that each write
	// reaches the device in the writer's context, where the throttle sees
	// it.
	RootfsSyncWrites bool
	// GPU says how whole GPUs reach the pod (R11).
	GPU GPUMode
	// PodMetrics says who serves the pod's metrics endpoint (R27): the host
	// side, listening in the pod's network namespace, or the sandbox, which
	// owns the pod's network interface.
	PodMetrics MetricsServer
	// InProcess says that the backend's task service is containerd's runc
	// task service run inside the cci shim (runc, and runsc through it),
	// not a shim process of its own: one process per pod instead of two.
	// The backend binary is still what containerd's delete subcommand path
	// runs after a crash.
	InProcess bool
}

// Isolation is how far a backend separates containers from the host kernel.
type Isolation string

const (
	// IsolationNone: containers run on the host kernel (runc).
	IsolationNone Isolation = "none"
	// IsolationUserKernel: a user-space kernel per pod intercepts every
	// system call (gVisor).
	IsolationUserKernel Isolation = "user-kernel"
	// IsolationVM: a guest kernel per pod in a micro-VM (Kata).
	IsolationVM Isolation = "vm"
)

// IsolatesKernel reports whether containers are kept off the host kernel.
func (i Isolation) IsolatesKernel() bool { return i == IsolationUserKernel || i == IsolationVM }

// ThrottlePlacement is where the rootfs device throttle is applied.
type ThrottlePlacement string

const (
	// ThrottleContainer: each container's own cgroup, through its spec
	// (linux.resources.blockIO), written by the OCI runtime.
	ThrottleContainer ThrottlePlacement = "container"
	// ThrottleSandbox: the pod sandbox's host cgroup, written by the shim
	// once the sandbox exists; it holds the processes that do the pod's I/O.
	ThrottleSandbox ThrottlePlacement = "sandbox"
)

// GPUMode is how GPUs are handed to a pod.
type GPUMode string

const (
	// GPUDeviceNodes: the host's /dev/nvidia* nodes in the container (runc).
	GPUDeviceNodes GPUMode = "device-nodes"
	// GPUVFIO: PCI passthrough of the whole device into the VM (Kata).
	GPUVFIO GPUMode = "vfio"
	// GPUNVProxy: gVisor's nvproxy forwards the driver's ioctls.
	GPUNVProxy GPUMode = "nvproxy"
)

// MetricsServer is who serves a pod's metrics endpoint.
type MetricsServer string

const (
	// MetricsHostNetns: the shim listens inside the pod's network namespace.
	MetricsHostNetns MetricsServer = "host-netns"
	// MetricsInSandbox: a server inside the sandbox, which owns the pod's
	// interface (gVisor's netstack, Kata's guest).
	MetricsInSandbox MetricsServer = "in-sandbox"
)
