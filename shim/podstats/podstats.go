// Package podstats is the stats file each pod's shim writes to its state dir
// (each second while its figures change, at most ten seconds apart while
// they do not: shim/stats.go), and its reader: the throttle and
// log-collection figures the node agent exports and the bench harness
// reads, and who the pod is in Kubernetes' terms (from the CRI annotations
// on its containers' specs), so that the agent labels its metrics as
// cAdvisor and kube-state-metrics do.
// It holds no logic beyond reading those annotations.
package podstats

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
)

// File is the stats file's name in <state_dir>/<namespace>/<pod>/.
const File = "stats.json"

// Pod is the stats file of a pod.
type Pod struct {
	Time time.Time `json:"time"`
	PodIdentity
	// Containers are keyed by containerd container ID; the CRI sandbox
	// (pause) container is among them, with Type "sandbox".
	Containers map[string]Container `json:"containers"`
	Logs       *logfwd.Stats        `json:"logs,omitempty"`
}

// PodIdentity is the Kubernetes pod, from the CRI annotations. All empty
// for a pod not created through CRI (ctr).
type PodIdentity struct {
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	UID       string `json:"uid,omitempty"`
}

// ContainerIdentity is the Kubernetes container, from the CRI annotations.
type ContainerIdentity struct {
	Name string `json:"name,omitempty"` // the container's name in the pod spec
	// Type is ContainerTypeSandbox for the pause container,
	// ContainerTypeContainer for the pod's containers, "" outside CRI.
	Type string `json:"type,omitempty"`
}

// Container is one container's entry.
type Container struct {
	ContainerIdentity
	Stdio  iothrottle.Stats `json:"stdio"`
	Rootfs *Rootfs          `json:"rootfs,omitempty"`
}

// The CRI annotations containerd puts on every container's spec
// (containerd's internal/cri/annotations), and the container types.
const (
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationContainerType    = "io.kubernetes.cri.container-type"

	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

// FromCRI reads the pod and container identity from the annotations of a
// container's OCI spec.
func FromCRI(annotations map[string]string) (PodIdentity, ContainerIdentity) {
	return PodIdentity{
			Namespace: annotations[AnnotationSandboxNamespace],
			Name:      annotations[AnnotationSandboxName],
			UID:       annotations[AnnotationSandboxUID],
		}, ContainerIdentity{
			Name: annotations[AnnotationContainerName],
			Type: annotations[AnnotationContainerType],
		}
}

// Rootfs is a container's throttled rootfs device and its I/O.
type Rootfs struct {
	Device string                    `json:"device"`
	Limits iothrottle.DeviceLimits   `json:"limits"`
	IO     *iothrottle.DeviceIOStats `json:"io,omitempty"`
}

// ReadAll reads the stats file of every pod under stateDir, keyed by
// "<containerd namespace>/<pod's sandbox ID>" (the state dir's layout).
func ReadAll(stateDir string) (map[string]Pod, error) {
	paths, err := filepath.Glob(filepath.Join(stateDir, "*", "*", File))
	if err != nil {
		return nil, err
	}
	out := make(map[string]Pod, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // the pod went away
		}
		var ps Pod
		if err := json.Unmarshal(data, &ps); err != nil {
			return nil, fmt.Errorf("stats file %s: %w", p, err)
		}
		dir := filepath.Dir(p)
		out[filepath.Base(filepath.Dir(dir))+"/"+filepath.Base(dir)] = ps
	}
	return out, nil
}
