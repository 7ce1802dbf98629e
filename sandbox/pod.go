package sandbox

import (
	"fmt"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CRI annotations set by containerd on every container spec it creates.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// Platform pod annotations (passed through by containerd's pod_annotations).
const (
	AnnotationHostPathReplacement = "coordinator.cci.io/hostpath-replacement"
	AnnotationHostPathVolumes     = "coordinator.cci.io/hostpath-volumes"
	AnnotationContainers          = "resources.cci.io/containers"
	AnnotationShmSize             = "shm.cci.io/size"
)

// ContainerType says whether a spec is a pod's sandbox (pause) container, an
// application container of a pod, or a standalone container (ctr).
type ContainerType string

const (
	TypeSandbox    ContainerType = "sandbox"
	TypeContainer  ContainerType = "container"
	TypeStandalone ContainerType = "" // no CRI annotations: a one-container pod (ctr)
)

// Pod is the identity of a spec within its pod, read from CRI annotations.
type Pod struct {
	// ID is the container's id as containerd gave it to the shim (the task
	// id of Create); PodFromSpec leaves it empty and the shim sets it. For a
	// CRI sandbox it equals SandboxID.
	ID            string
	Type          ContainerType
	SandboxID     string
	SandboxName   string
	Namespace     string
	UID           string
	ContainerName string
	// Annotations are all annotations of the spec; pod annotations that
	// containerd passes through (pod_annotations) are among them.
	Annotations map[string]string
}

// IsSandbox reports whether the spec starts a sandbox: a CRI pod sandbox or a
// standalone container, which is its own pod.
func (p *Pod) IsSandbox() bool { return p.Type != TypeContainer }

// Name is the name used in tenant-facing errors.
func (p *Pod) Name() string {
	switch {
	case p.ContainerName != "":
		return p.ContainerName
	case p.Type == TypeSandbox && p.SandboxName != "":
		return p.SandboxName
	case p.Type == TypeSandbox:
		return "sandbox"
	}
	return "container"
}

// PodOfContainer is PodFromSpec for container id: the pod model with the
// container's id, and a standalone (ctr) container without a CRI name named
// by its id, which errors and log policies use.
func PodOfContainer(spec *specs.Spec, id string) (*Pod, error) {
	pod, err := PodFromSpec(spec)
	if err != nil {
		return nil, err
	}
	pod.ID = id
	if pod.Type == TypeStandalone && pod.ContainerName == "" {
		pod.ContainerName = id
	}
	return pod, nil
}

// PodFromSpec reads the pod model from a spec's annotations.
func PodFromSpec(spec *specs.Spec) (*Pod, error) {
	if spec == nil {
		return nil, fmt.Errorf("reading pod: nil spec: %w", errdefs.ErrInvalidArgument)
	}
	a := spec.Annotations
	if a == nil {
		a = map[string]string{}
	}
	p := &Pod{
		Type:          ContainerType(a[AnnotationContainerType]),
		SandboxID:     a[AnnotationSandboxID],
		SandboxName:   a[AnnotationSandboxName],
		Namespace:     a[AnnotationSandboxNamespace],
		UID:           a[AnnotationSandboxUID],
		ContainerName: a[AnnotationContainerName],
		Annotations:   a,
	}
	switch p.Type {
	case TypeSandbox, TypeContainer:
		if p.SandboxID == "" {
			return nil, fmt.Errorf("reading pod: annotation %s missing for container type %q: %w",
				AnnotationSandboxID, p.Type, errdefs.ErrInvalidArgument)
		}
	case TypeStandalone:
	default:
		return nil, fmt.Errorf("reading pod: annotation %s=%q, want %q or %q: %w",
			AnnotationContainerType, p.Type, TypeSandbox, TypeContainer, errdefs.ErrInvalidArgument)
	}
	return p, nil
}
