package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

type containerJSON struct {
	Name     string            `json:"name"`
	Init     bool              `json:"init"`
	Sidecar  bool              `json:"sidecar"`
	Requests map[string]string `json:"requests"`
	Limits   map[string]string `json:"limits"`
}

// ParseContainers parses the resources.cci.io/containers annotation: a JSON
// list of {"name", "init", "sidecar", "requests": {"cpu", "memory"},
// "limits": {...}} with Kubernetes quantities, in the pod spec's order (init
// containers first). "sidecar" marks a restartable init container
// (restartPolicy Always) and needs "init". Other resource names (GPUs,
// ephemeral storage) are ignored; unknown fields, empty or duplicate names
// are errors.
func ParseContainers(v string) ([]ContainerResources, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.DisallowUnknownFields()
	var list []containerJSON
	if err := dec.Decode(&list); err != nil {
		return nil, annotationError(AnnotationContainers, v, err.Error())
	}
	if dec.More() {
		return nil, annotationError(AnnotationContainers, v, "trailing data after the JSON list")
	}
	seen := map[string]bool{}
	out := make([]ContainerResources, 0, len(list))
	for i, c := range list {
		if c.Name == "" || seen[c.Name] {
			return nil, annotationError(AnnotationContainers, v, fmt.Sprintf("entry %d: name %q is empty or repeated", i, c.Name))
		}
		seen[c.Name] = true
		if c.Sidecar && !c.Init {
			return nil, annotationError(AnnotationContainers, v, fmt.Sprintf("container %q: sidecar without init", c.Name))
		}
		req, err := parseResources(c.Requests)
		if err != nil {
			return nil, annotationError(AnnotationContainers, v, fmt.Sprintf("container %q requests: %v", c.Name, err))
		}
		lim, err := parseResources(c.Limits)
		if err != nil {
			return nil, annotationError(AnnotationContainers, v, fmt.Sprintf("container %q limits: %v", c.Name, err))
		}
		out = append(out, ContainerResources{Name: c.Name, Init: c.Init, Sidecar: c.Sidecar, Requests: req, Limits: lim})
	}
	return out, nil
}

func parseResources(m map[string]string) (Resources, error) {
	var r Resources
	var err error
	if s, ok := m["cpu"]; ok {
		if r.MilliCPU, err = ParseMilliCPU(s); err != nil {
			return r, err
		}
	}
	if s, ok := m["memory"]; ok {
		if r.Memory, err = ParseBytes(s); err != nil {
			return r, err
		}
	}
	return r, nil
}

func annotationError(name, value, problem string) error {
	if len(value) > 200 {
		value = value[:200] + "..."
	}
	return &PolicyError{Field: "annotation " + name, Value: value, Reason: problem, Allowed: annotationFormats[name]}
}

var annotationFormats = map[string]string{
	AnnotationContainers: `a JSON list of {"name", "init", "sidecar", "requests": {"cpu", "memory"}, "limits": {"cpu", "memory"}}`,
	AnnotationHostPathReplacement: `a JSON list of {"name": <volume name or "*">, "policyType": "remove" | "replaceByLocalDir" | "replaceByEmptyDir", ` +
		`"localDir": {"sizeLimit": "1Gi"}, "emptyDir": {"sizeLimit": "10Gi", "medium": "" | "Memory"}}`,
	AnnotationHostPathVolumes: `a JSON object {"<volume name>": "<host path>"}`,
	AnnotationShmSize:         `a memory quantity such as 128Mi, at most the pod memory`,
}

// WriteContainerResources writes normalised limits into a container spec:
// CFS quota (period 100ms) and shares for CPU, and the memory limit. Zero
// values leave the spec's setting alone.
func WriteContainerResources(spec *specs.Spec, r Resources) {
	if r.MilliCPU <= 0 && r.Memory <= 0 {
		return
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	res := spec.Linux.Resources
	if r.MilliCPU > 0 {
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		quota := r.MilliCPU * cpuPeriod / 1000
		period := uint64(cpuPeriod)
		shares := uint64(max(2, r.MilliCPU*1024/1000))
		res.CPU.Quota, res.CPU.Period, res.CPU.Shares = &quota, &period, &shares
	}
	if r.Memory > 0 {
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		limit := r.Memory
		// memory+swap may not be below memory (cgroup v1 memsw refuses the
		// write): a raised limit raises swap by as much, keeping the swap
		// the container had. -1 (unlimited) and unset stay as they are.
		if sw := res.Memory.Swap; sw != nil && *sw != -1 {
			extra := int64(0)
			if old := res.Memory.Limit; old != nil && *old > 0 && *sw > *old {
				extra = *sw - *old
			}
			swap := limit + extra
			res.Memory.Swap = &swap
		}
		res.Memory.Limit = &limit
	}
}
