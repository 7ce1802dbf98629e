package sandbox

import (
	"fmt"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// R5 from what CRI delivers. CRI's limits are the truth:
//
//   - At sandbox creation kubelet (v1.37, kuberuntime_sandbox_linux.go)
//     sends the pod's aggregate, PodLimits/PodRequests without overhead
//     (pod-level resources when the pod sets them): sum of app and sidecar
//     containers, max with each init container, a container without a limit
//     counting 0. containerd 2.4 writes it on the sandbox spec as
//     io.kubernetes.cri.sandbox-cpu-quota/-period (quota = millicores ×
//     period / 1000, at least 1000 µs; 0 without CPU limits),
//     sandbox-cpu-shares (from the CPU requests, at least 2) and
//     sandbox-memory (bytes, 0 without memory limits).
//   - Each container's own limits come with its own spec:
//     linux.resources.cpu.quota/period/shares and memory.limit.
//   - CRI carries no init/app marker and no memory request.
//
// The pod is normalised at sandbox creation. The breakdown R5 needs (which
// containers, init or app, in which order) comes from the annotation
// resources.cci.io/containers (written by cci-webhook, or by hand for ctr).
// The annotation is tenant-writable, so it only describes: its aggregate,
// computed the way kubelet does, must equal what CRI sent (refused
// otherwise), and later each container's CRI limits must equal its entry
// (refused otherwise; a container it does not list is refused). A memory
// request without a memory limit cannot be verified against CRI and is not
// used. With a verified breakdown R5 applies exactly, increment on the
// first non-BestEffort app container of the list.
//
// Without the annotation the pod is normalised from CRI's aggregate as one
// container. Each container then gets its own CRI limits rounded as R5
// rounds them (CPU up to 0.25 core, memory at least 0.2 GiB), a resource it
// does not limit gets the pod's; the increment (pod size minus the rounded
// aggregate) goes to the first non-BestEffort container created while no
// other holds it (PodState.IncrementHolder). Init containers run one at a
// time and exit before kubelet creates app containers, and the shim
// releases the increment when its holder exits (ForgetContainer), so it
// ends on the first app container; a restartable (sidecar) init container
// keeps it. No container's limit exceeds the pod size, and a BestEffort
// container gets the pod size: every container has a limit.
//
// Without sandbox annotations (a CRI client other than kubelet) the
// annotation alone sizes the pod, each container still verified against
// its own CRI limits; with neither, the pod gets Config.DefaultPodSize.

// CRIResources is a pod's or container's CPU and memory as CRI delivered
// them. Zero means not set.
type CRIResources struct {
	Known  bool   `json:"known"`
	Quota  int64  `json:"quota,omitempty"`
	Period uint64 `json:"period,omitempty"`
	Shares uint64 `json:"shares,omitempty"`
	Memory int64  `json:"memory,omitempty"`
}

const (
	minShares     = 2
	maxShares     = 262144
	minQuota      = 1000 // µs, kubelet's MinQuotaPeriod
	defaultPeriod = 100000
)

// LimitMilliCPU is the CPU limit in millicores (0: none).
func (r CRIResources) LimitMilliCPU() int64 {
	if r.Quota <= 0 {
		return 0
	}
	p := int64(r.Period)
	if p <= 0 {
		p = defaultPeriod
	}
	return ceilDiv(min(r.Quota, maxQuantity)*1000, p)
}

// RequestMilliCPU is the CPU request in millicores read back from shares
// (exact for requests of 2m and more; 0 for the minimum shares).
func (r CRIResources) RequestMilliCPU() int64 {
	if r.Shares <= minShares {
		return 0
	}
	return ceilDiv(int64(min(r.Shares, maxShares))*1000, 1024)
}

// limits is what R5 counts for the container: limits, else CPU request.
func (r CRIResources) limits() Resources {
	l := Resources{MilliCPU: r.LimitMilliCPU(), Memory: max(r.Memory, 0)}
	if l.MilliCPU == 0 {
		l.MilliCPU = r.RequestMilliCPU()
	}
	return l
}

// kubelet's conversions (pkg/kubelet/cm/helpers_linux.go).
func quotaOf(milli int64, period uint64) int64 {
	if milli <= 0 {
		return 0
	}
	if period == 0 {
		period = defaultPeriod
	}
	return max(milli*int64(period)/1000, minQuota)
}

func sharesOf(milli int64) uint64 {
	return uint64(min(max(milli*1024/1000, minShares), maxShares))
}

// criFromAnnotations reads the sandbox annotations containerd writes.
func criFromAnnotations(a map[string]string) (CRIResources, error) {
	var r CRIResources
	num := func(key string) (int64, bool, error) {
		v, ok := a[key]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > maxQuantity || n < -1 {
			return 0, true, annotationError(key, v, "not an integer")
		}
		return n, true, nil
	}
	q, qok, err := num(AnnotationSandboxCPUQuota)
	if err != nil {
		return r, err
	}
	p, pok, err := num(AnnotationSandboxCPUPeriod)
	if err != nil {
		return r, err
	}
	s, sok, err := num(AnnotationSandboxCPUShares)
	if err != nil {
		return r, err
	}
	m, mok, err := num(AnnotationSandboxMemory)
	if err != nil {
		return r, err
	}
	if qok != pok || pok && (p <= 0 || p > 1000000) {
		return r, annotationError(AnnotationSandboxCPUQuota, a[AnnotationSandboxCPUQuota]+"/"+a[AnnotationSandboxCPUPeriod], "not a quota/period pair")
	}
	r = CRIResources{Known: qok || sok || mok, Quota: max(q, 0), Period: uint64(max(p, 0)), Shares: uint64(max(s, 0)), Memory: max(m, 0)}
	return r, nil
}

// criFromSpec reads a container's own CPU and memory settings.
func criFromSpec(spec *specs.Spec) CRIResources {
	r := CRIResources{Known: true}
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return r
	}
	if c := spec.Linux.Resources.CPU; c != nil {
		if c.Quota != nil && *c.Quota > 0 {
			r.Quota = min(*c.Quota, maxQuantity)
		}
		if c.Period != nil && *c.Period > 0 && *c.Period <= 1000000 {
			r.Period = *c.Period
		}
		if c.Shares != nil {
			r.Shares = min(*c.Shares, maxShares)
		}
	}
	if m := spec.Linux.Resources.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
		r.Memory = min(*m.Limit, maxQuantity+1)
	}
	return r
}

// aggregate is kubelet's pod total of one resource: max(apps + sidecars,
// each init container plus the sidecars started before it).
func aggregate(cs []ContainerResources, get func(ContainerResources) int64) int64 {
	var apps, sidecars, inits int64
	for _, c := range cs {
		v := get(c)
		switch {
		case c.Init && c.Sidecar:
			inits = max(inits, sidecars+v)
			sidecars += v
		case c.Init:
			inits = max(inits, sidecars+v)
		default:
			apps += v
		}
	}
	return max(apps+sidecars, inits)
}

func requestCPU(c ContainerResources) int64 {
	if c.Requests.MilliCPU > 0 {
		return c.Requests.MilliCPU
	}
	return c.Limits.MilliCPU
}

// mismatch compares what an annotation says with what CRI set, the way
// kubelet converts: it returns the first resource that differs.
func mismatch(limitCPU, requestCPU, memory int64, cri CRIResources) (field, said, got string) {
	if q := quotaOf(limitCPU, cri.Period); q != cri.Quota {
		return "CPU limit", fmtMilli(limitCPU) + " cores", fmtMilli(cri.LimitMilliCPU()) + " cores"
	}
	if memory != cri.Memory {
		return "memory limit", fmtBytes(memory), fmtBytes(cri.Memory)
	}
	if cri.Shares != 0 && sharesOf(requestCPU) != cri.Shares {
		return "CPU request", fmtMilli(requestCPU) + " cores", fmtMilli(cri.RequestMilliCPU()) + " cores"
	}
	return "", "", ""
}

func describedError(container, field, said, got, whose string) error {
	return &PolicyError{Container: container, Field: "annotation " + AnnotationContainers, Value: field + " " + said,
		Reason:  whose + " " + field + " is " + got + " as CRI set it",
		Allowed: "a description of the pod's containers that matches their CRI resources (the annotation describes, it never sets a limit)"}
}

// describedPod parses and verifies resources.cci.io/containers against the
// pod's aggregate (when known). ok is false when the pod has none.
func describedPod(pod *Pod, agg CRIResources) ([]ContainerResources, bool, error) {
	v, ok := pod.Annotations[AnnotationContainers]
	if !ok {
		return nil, false, nil
	}
	cs, err := ParseContainers(v)
	if err != nil {
		return nil, false, err
	}
	for i := range cs { // a memory request without a limit is invisible to CRI
		if cs[i].Limits.Memory == 0 {
			cs[i].Requests.Memory = 0
		}
	}
	if agg.Known {
		lim := aggregate(cs, func(c ContainerResources) int64 { return c.Limits.MilliCPU })
		req := aggregate(cs, requestCPU)
		mem := aggregate(cs, func(c ContainerResources) int64 { return c.Limits.Memory })
		if field, said, got := mismatch(lim, req, mem, agg); field != "" {
			return nil, false, describedError(pod.Name(), "pod "+field, said, got, "the")
		}
	}
	return cs, true, nil
}

// sizeSandbox normalises a new pod (sandbox or standalone container) and
// fills the size fields of st.
func sizeSandbox(spec *specs.Spec, pod *Pod, cfg *Config, st *PodState) error {
	var agg CRIResources
	var err error
	if pod.Type == TypeStandalone {
		agg = criFromSpec(spec)
	} else if agg, err = criFromAnnotations(pod.Annotations); err != nil {
		return err
	}
	st.CRI = agg
	desc, ok, err := describedPod(pod, agg)
	if err != nil {
		return err
	}
	var cs []ContainerResources
	switch {
	case ok:
		cs, st.Described, st.SizeSource = desc, desc, "annotation "+AnnotationContainers+" verified against CRI"
		if !agg.Known {
			st.SizeSource = "annotation " + AnnotationContainers + " (CRI sent no pod resources)"
		}
	case agg.Known:
		cs, st.SizeSource = []ContainerResources{{Name: pod.Name(), Limits: agg.limits()}}, "CRI"
	default:
		cs, st.SizeSource = []ContainerResources{{Name: pod.Name()}}, "node default"
	}
	size, err := NormalisePodSize(cs, cfg.DefaultPodSize)
	if err != nil {
		return err
	}
	st.Size = *size
	if pod.Type == TypeStandalone {
		limits, err := containerLimits(spec, pod, cfg, st, agg)
		if err != nil {
			return err
		}
		WriteContainerResources(spec, limits)
	}
	return nil
}

// containerLimits decides an app (or standalone) container's limits from
// the pod state (which it may update: the increment holder).
func containerLimits(spec *specs.Spec, pod *Pod, cfg *Config, st *PodState, own CRIResources) (Resources, error) {
	name := pod.Name()
	podSize := st.Size.Pod
	fill := func(r Resources) Resources {
		if r.MilliCPU <= 0 || r.MilliCPU > podSize.MilliCPU {
			r.MilliCPU = podSize.MilliCPU
		}
		if r.Memory <= 0 || r.Memory > podSize.Memory {
			r.Memory = podSize.Memory
		}
		return r
	}
	described := -1
	for j, d := range st.Described {
		if d.Name == name {
			described = j
		}
	}
	if st.Described != nil && described >= 0 {
		i := described
		d := st.Described[i]
		if field, said, got := mismatch(d.Limits.MilliCPU, requestCPU(d), d.Limits.Memory, own); field != "" {
			return Resources{}, describedError(name, field, said, got, fmt.Sprintf("container %q's", name))
		}
		n := st.Size.Containers[i]
		if n.BestEffort {
			return podSize, nil
		}
		return fill(n.Limits), nil
	}
	l := own.limits()
	if l.MilliCPU == 0 && l.Memory == 0 {
		return podSize, nil // BestEffort
	}
	r := Resources{MilliCPU: roundUp(l.MilliCPU, cpuStep)}
	if l.Memory > 0 {
		r.Memory = max(l.Memory, minMemory)
	}
	// A container the description does not list (an ephemeral debug
	// container: kubectl debug adds it after the pod's annotations were
	// fixed) keeps its own CRI limits within the pod's size, and never takes
	// the increment, which the description gave away.
	if st.Described == nil && (st.IncrementHolder == "" || st.IncrementHolder == pod.ID) {
		st.IncrementHolder = pod.ID
		a := st.CRI.limits()
		ar := Resources{MilliCPU: roundUp(a.MilliCPU, cpuStep), Memory: a.Memory}
		if ar.Memory > 0 {
			ar.Memory = max(ar.Memory, minMemory)
		}
		if r.MilliCPU > 0 {
			r.MilliCPU += max(podSize.MilliCPU-ar.MilliCPU, 0)
		}
		if r.Memory > 0 {
			r.Memory += max(podSize.Memory-ar.Memory, 0)
		}
	}
	return fill(r), nil
}
