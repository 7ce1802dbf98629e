package admission

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/cci-shim/cci-shim/sandbox"
)

// HostPathVolumes returns the value of coordinator.cci.io/hostpath-volumes
// for pod: a JSON object of every hostPath volume's name and path, or ""
// when the pod has no hostPath volume. A path that is not absolute is
// refused: the shim could not match it to a mount.
func HostPathVolumes(pod *corev1.Pod) (string, error) {
	m := map[string]string{}
	for i, v := range pod.Spec.Volumes {
		if v.HostPath == nil {
			continue
		}
		if v.Name == "" || !path.IsAbs(v.HostPath.Path) {
			return "", &sandbox.PolicyError{Field: fmt.Sprintf("spec.volumes[%d].hostPath.path", i), Value: v.HostPath.Path,
				Reason: fmt.Sprintf("volume %q", v.Name), Allowed: "a named volume with an absolute host path"}
		}
		m[v.Name] = v.HostPath.Path
	}
	if len(m) == 0 {
		return "", nil
	}
	b, err := json.Marshal(m) // keys sorted: the value is deterministic
	if err != nil {
		return "", fmt.Errorf("encoding %s: %w", sandbox.AnnotationHostPathVolumes, err)
	}
	return string(b), nil
}

// containerJSON is one entry of resources.cci.io/containers, as
// sandbox.ParseContainers reads it.
type containerJSON struct {
	Name     string            `json:"name"`
	Init     bool              `json:"init"`
	Sidecar  bool              `json:"sidecar,omitempty"`
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// Bounds of a written quantity: those of sandbox's parser (2^50 bytes and
// 2^50 millicores), far above any valid pod.
const (
	maxMemoryBytes = int64(1) << 50
	maxMilliCPU    = int64(1) << 50
)

// ContainersAnnotation returns the value of resources.cci.io/containers for
// pod: its containers in the pod spec's order, init containers first with
// "init": true (and "sidecar": true for restartable ones, restartPolicy
// Always), then app containers. The shim checks the description against
// what CRI delivers (kubelet's aggregate and each container's limits), so
// it is computed from the same fields kubelet uses.
//
// A pod with pod-level resources (spec.resources) gets no description (""):
// kubelet then sends the pod-level values as the aggregate, which a sum of
// containers would contradict, and the shim sizes such a pod from CRI.
//
// CPU is written in millicores ("300m", rounded up as kubelet rounds),
// memory in bytes ("734003200"): the forms sandbox's quantity parser reads,
// whatever form the pod used (1e3, 0.5Gi, ...). Only cpu and memory are
// described; negative values are left out (the API server refuses them
// after mutating admission).
func ContainersAnnotation(pod *corev1.Pod) (string, error) {
	if pod.Spec.Resources != nil && (len(pod.Spec.Resources.Limits) > 0 || len(pod.Spec.Resources.Requests) > 0) {
		return "", nil
	}
	list := []containerJSON{}
	add := func(c *corev1.Container, init bool) error {
		req, err := quantities(c.Name, "requests", c.Resources.Requests)
		if err != nil {
			return err
		}
		lim, err := quantities(c.Name, "limits", c.Resources.Limits)
		if err != nil {
			return err
		}
		list = append(list, containerJSON{Name: c.Name, Init: init, Sidecar: init && isSidecar(c), Requests: req, Limits: lim})
		return nil
	}
	for i := range pod.Spec.InitContainers {
		if err := add(&pod.Spec.InitContainers[i], true); err != nil {
			return "", err
		}
	}
	for i := range pod.Spec.Containers {
		if err := add(&pod.Spec.Containers[i], false); err != nil {
			return "", err
		}
	}
	b, err := json.Marshal(list)
	if err != nil {
		return "", fmt.Errorf("encoding %s: %w", sandbox.AnnotationContainers, err)
	}
	return string(b), nil
}

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func quantities(container, field string, rl corev1.ResourceList) (map[string]string, error) {
	out := map[string]string{}
	if q, ok := rl[corev1.ResourceCPU]; ok && q.Sign() >= 0 {
		if q.Cmp(*resource.NewMilliQuantity(maxMilliCPU, resource.DecimalSI)) > 0 {
			return nil, tooLarge(container, field, "cpu", q)
		}
		out["cpu"] = strconv.FormatInt(q.MilliValue(), 10) + "m"
	}
	if q, ok := rl[corev1.ResourceMemory]; ok && q.Sign() >= 0 {
		if q.Cmp(*resource.NewQuantity(maxMemoryBytes, resource.BinarySI)) > 0 {
			return nil, tooLarge(container, field, "memory", q)
		}
		out["memory"] = strconv.FormatInt(q.Value(), 10)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func tooLarge(container, field, name string, q resource.Quantity) error {
	return &sandbox.PolicyError{Container: container, Field: "resources." + field + "." + name, Value: q.String(),
		Allowed: "a pod of at most 64 cores and 512 GiB"}
}

// uncoveredHostPaths returns an error for each hostPath volume that a
// container mounts but no entry of coordinator.cci.io/hostpath-replacement
// covers: the shim would refuse the container. An entry covers a volume
// when it is named after the volume (the shim matches by name through
// hostpath-volumes), after the last element of its path (the shim's
// fallback), or "*". A volume mounted with a subPath is matched by the shim
// on the mount's own source, so the last-element rule is only a hint there;
// name and "*" entries match either way.
func uncoveredHostPaths(pod *corev1.Pod, repl []sandbox.Replacement) []error {
	covered := func(names ...string) bool {
		return slices.ContainsFunc(repl, func(r sandbox.Replacement) bool { return slices.Contains(names, r.Name) })
	}
	vols := map[string]*corev1.HostPathVolumeSource{}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			vols[v.Name] = v.HostPath
		}
	}
	var errs []error
	reported := map[string]bool{}
	check := func(container string, mounts []corev1.VolumeMount) {
		for _, m := range mounts {
			hp, ok := vols[m.Name]
			if !ok || reported[m.Name] || path.Clean(m.MountPath) == "/dev/shm" {
				continue // not a hostPath; or reported; or /dev/shm, which the shim replaces by the pod's tmpfs
			}
			if covered(m.Name, path.Base(path.Clean(hp.Path)), "*") {
				continue
			}
			reported[m.Name] = true
			errs = append(errs, &sandbox.PolicyError{Container: container, Field: "hostPath volume", Value: hp.Path,
				Reason: fmt.Sprintf("volume %q mounted at %s", m.Name, m.MountPath),
				Allowed: "hostPath volumes replaced by annotation " + sandbox.AnnotationHostPathReplacement +
					" (policyType remove, replaceByLocalDir or replaceByEmptyDir)"})
		}
	}
	for _, c := range pod.Spec.InitContainers {
		check(c.Name, c.VolumeMounts)
	}
	for _, c := range pod.Spec.Containers {
		check(c.Name, c.VolumeMounts)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		check(c.Name, c.VolumeMounts)
	}
	return errs
}
