package sandbox

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cci-shim/cci-shim/shm"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Plan is the host work a spec needs before the backend sees it, the pod
// size the sandbox is built with, and the pod state to persist.
type Plan struct {
	PodDir string
	// Dirs are pod-private replacement volumes (R4).
	Dirs []Dir
	// Shm is the host tmpfs bind-mounted at /dev/shm (R10).
	Shm ShmMount
	// Pins are the platform bind sources to open and mount at their
	// targets (Pin, before the backend's Create); the spec already points
	// at the targets.
	Pins []Pin
	// PodSize is the normalised pod size (R5).
	PodSize *PodSize
	// State is the pod's state to persist when it is new (a sandbox or
	// standalone container) or changed (an app container took the
	// increment or showed a root); nil when unchanged. The shim passes the
	// persisted state back in Config.Pod.
	State *PodState
	// Warnings are things the shim must log loudly (an insecure node option
	// let something through).
	Warnings []string
}

// Dir is a pod-private directory replacing a hostPath volume.
type Dir struct {
	Path   string // mount point, bind-mounted into containers
	Image  string // disk: sparse ext4 image loop-mounted at Path; "" for Memory
	Size   int64  // bytes
	Memory bool   // tmpfs of Size
}

// ShmMount is the host tmpfs that backs the pod's /dev/shm.
type ShmMount struct {
	Path string
	Size int64
}

// Apply checks spec against the platform's allow-list and rewrites it in
// place (R3, R4, R5, R9, R10, R24, R25): unknown fields, annotations,
// root, capabilities, rlimits, scheduling, LSM labels, seccomp, devices and
// device rules, namespaces (by inode), cgroups path, mounts (pinned
// platform binds, hostPath replacement, /dev/shm), masked paths, pod size
// and the container's limits, oomScoreAdj. Only the shim's own additions
// (GPU devices and libraries, the rootfs throttle, backend annotations) may
// follow it.
//
// pod.ID must be set (the Create request's id). For an app container of a
// pod, cfg.Pod is the state the sandbox's Apply returned. Apply does no I/O
// except through cfg.Namespaces and cfg.HostFS. Errors are *PolicyError or
// *shm.SizeError (tenant-facing) or wrap an errdefs sentinel. On error spec
// may be partly rewritten; callers discard it.
func Apply(spec *specs.Spec, pod *Pod, cfg Config) (*Plan, error) {
	if spec == nil || pod == nil {
		return nil, fmt.Errorf("applying policy: nil spec or pod: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.PodDir == "" || !filepath.IsAbs(cfg.PodDir) {
		return nil, fmt.Errorf("applying policy: pod dir %q is not absolute: %w", cfg.PodDir, errdefs.ErrInvalidArgument)
	}
	if cfg.PinDir != "" && !filepath.IsAbs(cfg.PinDir) {
		return nil, fmt.Errorf("applying policy: pin dir %q is not absolute: %w", cfg.PinDir, errdefs.ErrInvalidArgument)
	}
	cfg = cfg.withDefaults()
	if err := checkIdentity(pod, &cfg); err != nil {
		return nil, err
	}
	name := pod.Name()
	if err := checkFields(name, spec); err != nil {
		return nil, err
	}
	if err := CheckRefusals(name, spec); err != nil {
		return nil, err
	}
	if err := checkAnnotations(name, spec.Annotations); err != nil {
		return nil, err
	}
	if err := checkRoot(name, spec); err != nil {
		return nil, err
	}
	if spec.Process == nil {
		return nil, &PolicyError{Container: name, Field: "process", Value: "(none)", Allowed: "a process to run"}
	}
	plan := &Plan{PodDir: cfg.PodDir}
	warning, err := checkCapabilities(name, spec.Process, &cfg)
	if err != nil {
		return nil, err
	}
	if warning != "" {
		plan.Warnings = append(plan.Warnings, warning)
	}
	for _, check := range []func() error{
		func() error { return checkRlimits(name, spec.Process, &cfg) },
		func() error { return checkScheduling(name, spec.Process, &cfg) },
		func() error { return checkLSM(name, spec, &cfg) },
		func() error { return checkPersonality(name, spec) },
		func() error { return checkDevices(name, spec) },
		func() error { return checkDeviceRules(name, spec) },
	} {
		if err := check(); err != nil {
			return nil, err
		}
	}
	if spec.Linux != nil {
		if err := ValidateSysctls(name, spec.Linux.Sysctl); err != nil {
			return nil, err
		}
	}
	joined, err := checkNamespaces(name, spec, pod, &cfg)
	if err != nil {
		return nil, err
	}

	// The pod's state: new for a sandbox, a copy to update for a container.
	var st *PodState
	changed := false
	if pod.IsSandbox() {
		st = &PodState{Version: podStateVersion, Identity: PodIdentity{Namespace: cfg.Namespace, SandboxID: pod.SandboxID,
			Standalone: pod.Type == TypeStandalone, Name: pod.SandboxName, PodNamespace: pod.Namespace, UID: pod.UID}}
		if pod.Type == TypeStandalone {
			st.Identity.SandboxID = pod.ID
		}
		st.RecordNamespaces("", joined)
		if err := sizeSandbox(spec, pod, &cfg, st); err != nil {
			return nil, err
		}
		changed = true
	} else {
		st = cfg.Pod.clone()
		holder := st.IncrementHolder
		limits, err := containerLimits(spec, pod, &cfg, st, criFromSpec(spec))
		if err != nil {
			return nil, err
		}
		WriteContainerResources(spec, limits)
		changed = holder != st.IncrementHolder
	}
	size := st.Size
	plan.PodSize = &size
	cfg.Pod = st

	cg, parent := cgroupsPath(spec, pod, &cfg)
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	spec.Linux.CgroupsPath = cg
	if pod.IsSandbox() {
		st.CgroupParent = parent
	}

	roots := st.Roots
	mp, err := checkMounts(spec, pod, &cfg, size.Pod.Memory)
	if err != nil {
		return nil, err
	}
	plan.Dirs, plan.Pins = mp.dirs, mp.pins
	st.Roots = mp.roots
	changed = changed || roots != st.Roots
	if plan.Shm, err = rewriteShm(spec, pod, &cfg, size.Pod.Memory); err != nil {
		return nil, err
	}
	if _, err := checkSeccomp(name, spec, &cfg); err != nil {
		return nil, err
	}
	if err := checkResources(name, spec, &cfg); err != nil {
		return nil, err
	}
	if spec.Process != nil && spec.Process.OOMScoreAdj != nil {
		v := ClampOOMScoreAdj(*spec.Process.OOMScoreAdj, cfg.OOMScoreAdjFloor)
		spec.Process.OOMScoreAdj = &v
	}
	if changed {
		plan.State = st
	}
	return plan, nil
}

// checkIdentity validates every identifier that may reach a host path or a
// cgroup path, and, for an app container, that it joins the pod whose state
// the shim passed.
func checkIdentity(pod *Pod, cfg *Config) error {
	if err := ValidateIdentifier("containerd namespace", cfg.Namespace); err != nil {
		return fmt.Errorf("applying policy: %w", err)
	}
	if pod.ID == "" {
		return fmt.Errorf("applying policy: container id not set: %w", errdefs.ErrInvalidArgument)
	}
	if err := ValidateIdentifier("container id", pod.ID); err != nil {
		return err
	}
	if pod.Type != TypeStandalone {
		if err := ValidateIdentifier("annotation "+AnnotationSandboxID, pod.SandboxID); err != nil {
			return err
		}
		if cfg.trustCRI() && (!IsCRIID(pod.SandboxID) || !IsCRIID(pod.ID)) {
			return &PolicyError{Container: pod.Name(), Field: "annotation " + AnnotationSandboxID, Value: clip(pod.SandboxID + " / " + pod.ID),
				Reason: "CRI's sandbox and container ids are 64 hex digits", Allowed: "ids as containerd's CRI generates them"}
		}
		if pod.Type == TypeSandbox && pod.SandboxID != pod.ID {
			return &PolicyError{Container: pod.Name(), Field: "annotation " + AnnotationSandboxID, Value: clip(pod.SandboxID),
				Reason: "a sandbox's id is the container's own id " + pod.ID, Allowed: pod.ID}
		}
	}
	if pod.UID != "" && !ValidPodUID(pod.UID) {
		return &PolicyError{Container: pod.Name(), Field: "annotation " + AnnotationSandboxUID, Value: clip(pod.UID),
			Allowed: "a pod UID: a lowercase UUID, or 32 hex digits for a static pod"}
	}
	for field, v := range map[string]string{AnnotationSandboxName: pod.SandboxName, AnnotationSandboxNamespace: pod.Namespace, AnnotationContainerName: pod.ContainerName} {
		if v != "" && !validRecordName(v) {
			return &PolicyError{Container: "", Field: "annotation " + field, Value: clip(v), Allowed: "a Kubernetes name of at most 253 characters"}
		}
	}
	if pod.Type == TypeContainer {
		return checkJoin(pod, cfg)
	}
	return nil
}

// annotationPrefixes are the annotations a tenant spec may carry: CRI's
// own, the platform's (*.cci.io/), and CDI device requests (read by the GPU
// step). Anything else could configure a backend (io.katacontainers.*,
// dev.gvisor.*, org.criu.config names a host file for runc) and is refused;
// the backend's own annotations are written by the shim after the policy.
const allowedAnnotationsText = "io.kubernetes.*, cci.io/* and *.cci.io/* platform annotations, cdi.k8s.io/* device requests"

func checkAnnotations(container string, a map[string]string) error {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !annotationAllowed(k) {
			return &PolicyError{Container: container, Field: "annotation", Value: clip(k), Allowed: allowedAnnotationsText}
		}
	}
	return nil
}

func annotationAllowed(k string) bool {
	if strings.ContainsAny(k, "\x00\n") || len(k) > 317 {
		return false
	}
	prefix, _, ok := strings.Cut(k, "/")
	switch {
	case strings.HasPrefix(k, "io.kubernetes."):
		return true
	case !ok:
		return false
	case prefix == "cci.io" || strings.HasSuffix(prefix, ".cci.io"):
		return true
	case prefix == "cdi.k8s.io":
		return !strings.HasPrefix(k, "cdi.k8s.io/vfio") // the shim's own (gpu.ApplyKata)
	}
	return false
}

// checkRoot allows only the bundle's rootfs, where the shim mounts the
// container's snapshot: a host directory as root.path would be used
// read-write and skip the rootfs throttle.
func checkRoot(container string, spec *specs.Spec) error {
	if spec.Root == nil || spec.Root.Path != "rootfs" {
		v := "(none)"
		if spec.Root != nil {
			v = spec.Root.Path
		}
		return &PolicyError{Container: container, Field: "root.path", Value: clip(v),
			Allowed: `"rootfs": the container's snapshot, mounted in its bundle`}
	}
	return nil
}

// CheckRootfs refuses a Create without rootfs mounts: the container's root
// must be its snapshot (R7), whose block device the rootfs throttle (R8)
// limits. The shim calls it with len(CreateTaskRequest.Rootfs).
func CheckRootfs(container string, mounts int) error {
	if mounts == 0 {
		return &PolicyError{Container: container, Field: "rootfs", Value: "no mounts",
			Allowed: "a container created from an image snapshot"}
	}
	return nil
}

// rewriteShm decides the /dev/shm size and makes /dev/shm a bind mount of
// the pod's host tmpfs <PodDir>/shm, replacing CRI's sandbox shm, a Memory
// emptyDir at /dev/shm, or a tmpfs mount.
func rewriteShm(spec *specs.Spec, pod *Pod, cfg *Config, podMemory int64) (ShmMount, error) {
	in := shm.Input{PodMemory: podMemory, Default: cfg.ShmSize}
	if v, ok := pod.Annotations[AnnotationShmSize]; ok {
		n, err := ParseShmSize(v)
		if err != nil {
			return ShmMount{}, err
		}
		in.Annotation = n
	}
	i := slices.IndexFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/shm" })
	ro := false
	if i >= 0 {
		m := spec.Mounts[i]
		ro = slices.Contains(m.Options, "ro")
		if src, ok := cleanAbs(m.Source); ok && isBind(m) && in.Annotation == 0 {
			if ps, ok, _ := matchPlatform(src, pod, cfg); ok && ps.VolumeKind == "kubernetes.io~empty-dir" {
				n, tmpfs, err := cfg.HostFS(Pin{Root: ps.Root, RootTrusted: ps.Trusted, Anchor: ps.Anchor, Rel: ps.Rel})
				if err != nil {
					return ShmMount{}, fmt.Errorf("sizing /dev/shm from emptyDir: %w", err)
				}
				if tmpfs {
					in.EmptyDir = n
				}
			}
		}
	}
	size, _, err := shm.Size(in)
	if err != nil {
		return ShmMount{}, err
	}
	sm := ShmMount{Path: filepath.Join(cfg.PodDir, "shm"), Size: size}
	opts := []string{"rbind", "nosuid", "nodev", "noexec"}
	if ro {
		opts = append(opts, "ro")
	}
	m := specs.Mount{Destination: "/dev/shm", Type: "bind", Source: sm.Path, Options: opts}
	spec.Mounts = slices.DeleteFunc(spec.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/shm" })
	spec.Mounts = append(spec.Mounts, m)
	return sm, nil
}

// ParseShmSize reads the shm.cci.io/size annotation: a positive memory
// quantity (R10). Whether it fits the pod's memory is checked where the pod
// size is known.
func ParseShmSize(v string) (int64, error) {
	n, err := ParseBytes(v)
	if err != nil || n <= 0 {
		return 0, annotationError(AnnotationShmSize, v, "not a positive memory quantity")
	}
	return n, nil
}
