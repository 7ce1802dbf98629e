package sandbox

import (
	"fmt"
	"strconv"
)

// Pod size (R5), in exact integer units: millicores and bytes.

const (
	GiB = int64(1) << 30
	MiB = int64(1) << 20

	cpuStep       = 250       // millicores: CPU is rounded up to 0.25 core
	minMemory     = 214748365 // bytes: 0.2 GiB rounded up to a whole byte
	autoMaxCPU    = 32000
	autoMaxMemory = 256 * GiB
	cpuPeriod     = 100000 // µs, the CFS period written into specs
)

// Resources is an amount of CPU (millicores) and memory (bytes); 0 = unset.
type Resources struct {
	MilliCPU int64 `json:"milliCPU"`
	Memory   int64 `json:"memory"`
}

// ContainerResources is what the pod spec declares for one container.
type ContainerResources struct {
	Name     string    `json:"name"`
	Init     bool      `json:"init,omitempty"`
	Sidecar  bool      `json:"sidecar,omitempty"` // restartable init container: runs beside the app containers
	Requests Resources `json:"requests"`
	Limits   Resources `json:"limits"`
}

// NormalisedContainer is a container's limits after normalisation; requests
// equal limits. BestEffort containers keep zero limits.
type NormalisedContainer struct {
	Name       string    `json:"name"`
	Init       bool      `json:"init,omitempty"`
	Sidecar    bool      `json:"sidecar,omitempty"`
	BestEffort bool      `json:"bestEffort,omitempty"`
	Limits     Resources `json:"limits"`
}

// PodSize is the normalised pod size and every container's limits.
type PodSize struct {
	Pod        Resources             `json:"pod"`
	Containers []NormalisedContainer `json:"containers,omitempty"`
}

// Limits returns the normalised limits of the named container.
func (s *PodSize) Limits(name string) (NormalisedContainer, bool) {
	for _, c := range s.Containers {
		if c.Name == name {
			return c, true
		}
	}
	return NormalisedContainer{}, false
}

func roundUp(v, step int64) int64 { return (v + step - 1) / step * step }

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// podOf is max(sum of app containers, max of init containers), per
// resource; sidecars (restartable init containers) run beside the app
// containers and count with them.
func podOf(cs []NormalisedContainer) (pod, apps Resources) {
	var inits Resources
	for _, c := range cs {
		if c.Init && !c.Sidecar {
			inits.MilliCPU = max(inits.MilliCPU, c.Limits.MilliCPU)
			inits.Memory = max(inits.Memory, c.Limits.Memory)
		} else {
			apps.MilliCPU += c.Limits.MilliCPU
			apps.Memory += c.Limits.Memory
		}
	}
	return Resources{max(apps.MilliCPU, inits.MilliCPU), max(apps.Memory, inits.Memory)}, apps
}

// NormalisePodSize applies R5 to a pod's containers. Requests are set equal
// to limits (limits where given, else requests). A pod of at most 32 cores
// and 256 GiB is normalised: each non-BestEffort container's CPU is rounded
// up to 0.25 core and its memory raised to at least 0.2 GiB; if the pod is
// still within 32 cores / 256 GiB its memory is rounded up to whole GiB,
// raised to 2 GiB per core, and its CPU raised to a multiple of 0.25 core of
// at least memory/8. The first non-BestEffort app container receives what
// brings the app containers' sum up to the pod size (the increments; more
// when an init container dominates, so that pod = max(sum app, max init)
// holds for the returned limits). A pod whose containers are all BestEffort
// gets def. The result is validated with ValidatePodSize.
//
// Inputs are bounded: at most 256 containers, each value at most 2^50.
func NormalisePodSize(in []ContainerResources, def Resources) (*PodSize, error) {
	if len(in) > 256 {
		return nil, &PolicyError{Field: "pod containers", Value: strconv.Itoa(len(in)), Allowed: "at most 256 containers"}
	}
	cs := make([]NormalisedContainer, len(in))
	hasApp := false
	for i, c := range in {
		l := c.Limits
		if l.MilliCPU <= 0 {
			l.MilliCPU = max(c.Requests.MilliCPU, 0)
		}
		if l.Memory <= 0 {
			l.Memory = max(c.Requests.Memory, 0)
		}
		if l.MilliCPU > maxQuantity || l.Memory > maxQuantity {
			return nil, &PolicyError{Container: c.Name, Field: "resources", Value: fmtResources(l), Allowed: "at most 64 cores and 512 GiB"}
		}
		cs[i] = NormalisedContainer{Name: c.Name, Init: c.Init, Sidecar: c.Sidecar, Limits: l, BestEffort: l.MilliCPU == 0 && l.Memory == 0}
		hasApp = hasApp || !c.Init
	}
	if !hasApp {
		return nil, &PolicyError{Field: "pod containers", Value: strconv.Itoa(len(in)) + " init containers", Allowed: "at least one app container"}
	}
	pod, _ := podOf(cs)
	if pod.MilliCPU == 0 && pod.Memory == 0 {
		if err := ValidatePodSize(def, ""); err != nil {
			return nil, fmt.Errorf("default pod size: %w", err)
		}
		return &PodSize{Pod: def, Containers: cs}, nil
	}
	skipped := "pod is over 32 cores or 256 GiB, so it is not normalised"
	if pod.MilliCPU <= autoMaxCPU && pod.Memory <= autoMaxMemory {
		for i := range cs {
			if !cs[i].BestEffort {
				cs[i].Limits.MilliCPU = roundUp(cs[i].Limits.MilliCPU, cpuStep)
				cs[i].Limits.Memory = max(cs[i].Limits.Memory, minMemory)
			}
		}
		pod, _ = podOf(cs)
		skipped = "pod is over 32 cores or 256 GiB after rounding containers up, so it is not normalised further"
		if pod.MilliCPU <= autoMaxCPU && pod.Memory <= autoMaxMemory {
			skipped = ""
			pod = normalisePod(pod)
			first := -1
			for i, c := range cs {
				if !c.Init && !c.BestEffort {
					first = i
					break
				}
			}
			if first >= 0 {
				_, apps := podOf(cs)
				cs[first].Limits.MilliCPU += pod.MilliCPU - apps.MilliCPU
				cs[first].Limits.Memory += pod.Memory - apps.Memory
			}
		}
	}
	if err := ValidatePodSize(pod, skipped); err != nil {
		return nil, err
	}
	return &PodSize{Pod: pod, Containers: cs}, nil
}

// normalisePod rounds a pod of at most 32 cores / 256 GiB whose CPU is a
// multiple of 0.25 core: memory up to whole GiB, then into 2..8 GiB per core.
func normalisePod(p Resources) Resources {
	p.Memory = roundUp(p.Memory, GiB)
	if p.Memory*1000 < 2*GiB*p.MilliCPU { // memory/CPU < 2
		p.Memory = ceilDiv(2*p.MilliCPU, 1000) * GiB
	}
	if p.Memory*1000 > 8*GiB*p.MilliCPU { // memory/CPU > 8
		p.MilliCPU = roundUp(p.Memory/GiB*125, cpuStep)
	}
	return p
}

// ValidatePodSize checks R5's valid pod sizes: CPU > 0 and 0.25–32 cores
// or exactly 48 or 64 cores; memory 1–512 GiB in whole GiB; memory:CPU
// between 2:1 and 8:1 GiB per core. reason, if set, is added to the error.
func ValidatePodSize(p Resources, reason string) error {
	cpuOK := p.MilliCPU >= 250 && p.MilliCPU <= 32000 || p.MilliCPU == 48000 || p.MilliCPU == 64000
	if !cpuOK {
		return &PolicyError{Field: "pod CPU", Value: fmtMilli(p.MilliCPU) + " cores", Reason: reason,
			Allowed: "0.25 to 32 cores, or exactly 48 or 64 cores"}
	}
	if p.Memory < GiB || p.Memory > 512*GiB || p.Memory%GiB != 0 {
		return &PolicyError{Field: "pod memory", Value: fmtBytes(p.Memory), Reason: reason,
			Allowed: "1 to 512 GiB in whole GiB"}
	}
	if p.Memory*1000 < 2*GiB*p.MilliCPU || p.Memory*1000 > 8*GiB*p.MilliCPU {
		return &PolicyError{Field: "pod memory:CPU ratio", Value: fmtResources(p), Reason: reason,
			Allowed: "2 to 8 GiB of memory per core"}
	}
	return nil
}

func fmtMilli(m int64) string {
	s := strconv.FormatInt(m/1000, 10)
	if f := m % 1000; f != 0 {
		if f < 0 {
			f = -f
		}
		frac := fmt.Sprintf("%03d", f)
		for frac[len(frac)-1] == '0' {
			frac = frac[:len(frac)-1]
		}
		s += "." + frac
	}
	return s
}

func fmtBytes(b int64) string {
	switch {
	case b%GiB == 0:
		return strconv.FormatInt(b/GiB, 10) + " GiB"
	case b%MiB == 0:
		return strconv.FormatInt(b/MiB, 10) + " MiB"
	}
	return strconv.FormatInt(b, 10) + " bytes"
}

func fmtResources(r Resources) string {
	return fmtMilli(r.MilliCPU) + " cores, " + fmtBytes(r.Memory)
}
