package sandbox

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/cci-shim/cci-shim/shm"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Plan is the host work a spec needs before the backend sees it, and the
// pod size the sandbox is built with.
type Plan struct {
	PodDir string
	// Dirs are pod-private replacement volumes (R4).
	Dirs []Dir
	// Shm is the host tmpfs bind-mounted at /dev/shm (R10).
	Shm ShmMount
	// PodSize is the normalised pod size (R5); nil for an app container of
	// a pod without the resources.cci.io/containers annotation.
	PodSize *PodSize
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

// Apply validates spec against the platform rules and rewrites it in place:
// R3 refusals, R9 sysctls, R5 pod size and the container's normalised
// limits, R4 hostPath replacement, R10 /dev/shm, oomScoreAdj clamping. It
// does no I/O except cfg.HostFS on a Memory emptyDir mounted at /dev/shm.
// Errors are *PolicyError or *shm.SizeError (tenant-facing) or wrap an
// errdefs sentinel. On error spec may be partly rewritten; callers discard it.
func Apply(spec *specs.Spec, pod *Pod, cfg Config) (*Plan, error) {
	if spec == nil || pod == nil {
		return nil, fmt.Errorf("applying policy: nil spec or pod: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.PodDir == "" || !filepath.IsAbs(cfg.PodDir) {
		return nil, fmt.Errorf("applying policy: pod dir %q is not absolute: %w", cfg.PodDir, errdefs.ErrInvalidArgument)
	}
	cfg = cfg.withDefaults()
	name := pod.Name()
	if err := CheckRefusals(name, spec); err != nil {
		return nil, err
	}
	if spec.Linux != nil {
		if err := ValidateSysctls(name, spec.Linux.Sysctl); err != nil {
			return nil, err
		}
	}
	plan := &Plan{PodDir: cfg.PodDir}
	size, err := podSize(spec, pod, cfg)
	if err != nil {
		return nil, err
	}
	plan.PodSize = size
	var podMemory int64
	if size != nil {
		podMemory = size.Pod.Memory
	}
	if plan.Dirs, err = rewriteHostPaths(spec, pod, &cfg, podMemory); err != nil {
		return nil, err
	}
	if plan.Shm, err = rewriteShm(spec, pod, &cfg, podMemory); err != nil {
		return nil, err
	}
	if spec.Process != nil && spec.Process.OOMScoreAdj != nil {
		v := ClampOOMScoreAdj(*spec.Process.OOMScoreAdj, cfg.OOMScoreAdjFloor)
		spec.Process.OOMScoreAdj = &v
	}
	return plan, nil
}

// podSize normalises the pod's declared containers and writes this
// container's limits into spec. Sources, in order: the
// resources.cci.io/containers annotation; on a sandbox, containerd's
// sandbox-cpu/-memory annotations; on a standalone container, its own
// linux.resources; else cfg.DefaultPodSize. App containers of a pod without
// the annotation are left alone (the pod was sized at sandbox creation).
func podSize(spec *specs.Spec, pod *Pod, cfg Config) (*PodSize, error) {
	cs, err := PodContainers(pod.Annotations)
	if err != nil {
		return nil, err
	}
	_, listed := pod.Annotations[AnnotationContainers]
	if cs == nil && !listed {
		switch pod.Type {
		case TypeContainer:
			return nil, nil
		case TypeStandalone:
			cs = []ContainerResources{{Name: pod.Name(), Limits: specResources(spec)}}
		}
	}
	if len(cs) == 0 {
		cs = []ContainerResources{{Name: "pod"}}
	}
	size, err := NormalisePodSize(cs, cfg.DefaultPodSize)
	if err != nil {
		return nil, err
	}
	if pod.Type != TypeSandbox {
		if c, ok := size.Limits(pod.Name()); ok && !c.BestEffort {
			WriteContainerResources(spec, c.Limits)
		}
	}
	return size, nil
}

// specResources reads the CPU and memory limits of a spec.
func specResources(spec *specs.Spec) Resources {
	var r Resources
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return r
	}
	if c := spec.Linux.Resources.CPU; c != nil && c.Quota != nil && c.Period != nil && *c.Quota > 0 && *c.Period > 0 && *c.Period <= 1000000 {
		r.MilliCPU = ceilDiv(min(*c.Quota, maxQuantity)*1000, int64(*c.Period))
	}
	if m := spec.Linux.Resources.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		r.Memory = min(*m.Limit, maxQuantity+1)
	}
	return r
}

// rewriteShm decides the /dev/shm size and makes /dev/shm a bind mount of
// the pod's host tmpfs <PodDir>/shm, replacing CRI's sandbox shm, a Memory
// emptyDir at /dev/shm, or a tmpfs mount.
func rewriteShm(spec *specs.Spec, pod *Pod, cfg *Config, podMemory int64) (ShmMount, error) {
	in := shm.Input{PodMemory: podMemory, Default: cfg.ShmSize}
	if v, ok := pod.Annotations[AnnotationShmSize]; ok {
		n, err := ParseBytes(v)
		if err != nil || n <= 0 {
			return ShmMount{}, annotationError(AnnotationShmSize, v, "not a positive memory quantity")
		}
		in.Annotation = n
	}
	i := slices.IndexFunc(spec.Mounts, func(m specs.Mount) bool { return filepath.Clean(m.Destination) == "/dev/shm" })
	ro := false
	if i >= 0 {
		m := spec.Mounts[i]
		ro = slices.Contains(m.Options, "ro")
		emptyDirs := filepath.Join(cfg.KubeletRoot, "pods", pod.UID, "volumes", "kubernetes.io~empty-dir")
		if pod.UID != "" && isBind(m) && under(filepath.Clean(m.Source), emptyDirs) && in.Annotation == 0 {
			n, tmpfs, err := cfg.HostFS(m.Source)
			if err != nil {
				return ShmMount{}, fmt.Errorf("sizing /dev/shm from emptyDir: %w", err)
			}
			if tmpfs {
				in.EmptyDir = n
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
	if i >= 0 {
		spec.Mounts[i] = m
	} else {
		spec.Mounts = append(spec.Mounts, m)
	}
	return sm, nil
}
