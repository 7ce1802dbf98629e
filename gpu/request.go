package gpu

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/internal/lazyre"
)

// Pod annotations a tenant uses to ask for GPUs (R13).
const (
	// AnnotationCount is the number of whole GPUs, 0–MaxGPUsPerPod.
	AnnotationCount = "gpu.cci.io/count"
	// AnnotationModel restricts the GPUs to a model: "T4", "P4", "V100 16GB",
	// "V100-32GB"; every word must appear in the NVML name (case-insensitive).
	AnnotationModel = "gpu.cci.io/model"
	// AnnotationDriverVersion picks the driver version, e.g. "418.126".
	AnnotationDriverVersion = "gpu.cci.io/driver-version"

	// EnvVisibleDevices is NVIDIA's device-plugin environment variable.
	EnvVisibleDevices = "NVIDIA_VISIBLE_DEVICES"
	// CDIAnnotationPrefix prefixes the CDI device annotations (cdi.k8s.io/<name>).
	CDIAnnotationPrefix = "cdi.k8s.io/"
	// CDIKindGPU is the CDI kind whose devices are requests for GPUs.
	CDIKindGPU = "nvidia.com/gpu"
	// cdiVFIOPrefix marks the runtime-internal annotations ApplyKata writes; they
	// are not requests.
	cdiVFIOPrefix = CDIAnnotationPrefix + "vfio"

	// MaxGPUsPerPod bounds gpu.cci.io/count.
	MaxGPUsPerPod = 16
)

// Sentinels for errors.Is on *RequestError.
var (
	// ErrInvalidRequest: the pod's request is malformed.
	ErrInvalidRequest = errors.New("invalid gpu request")
	// ErrUnavailable: the request is well-formed but the node cannot serve it.
	ErrUnavailable = errors.New("gpu request cannot be served")
)

// RequestError is a tenant-facing error naming the field, the value and what is
// allowed.
type RequestError struct {
	Field       string // annotation or environment variable
	Value       string
	Reason      string
	Allowed     string
	Unavailable bool // true: ErrUnavailable, false: ErrInvalidRequest
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("%s %q %s; allowed: %s", e.Field, e.Value, e.Reason, e.Allowed)
}

// Is maps the error onto ErrInvalidRequest or ErrUnavailable.
func (e *RequestError) Is(target error) bool {
	if e.Unavailable {
		return target == ErrUnavailable
	}
	return target == ErrInvalidRequest
}

// Request is what a pod asks for. Exactly one of Count, All and IDs is set.
type Request struct {
	Count         int      // this many GPUs, any free ones
	All           bool     // every GPU of the node
	IDs           []string // these GPUs: NVML indexes ("0") or UUIDs ("GPU-...")
	Model         string   // optional model filter (AnnotationModel)
	DriverVersion string   // optional driver version (AnnotationDriverVersion)
	Source        string   // field the GPUs came from, for messages
}

var (
	reDriver = lazyre.New(`^[0-9]{1,4}(\.[0-9]{1,4}){1,2}$`)
	reModel  = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$`)
	reUUID   = lazyre.New(`^GPU-[0-9a-fA-F-]{8,64}$`)
	reIndex  = lazyre.New(`^[0-9]{1,3}$`)
)

// ParseRequest reads the GPUs a container spec asks for; nil when none.
//
// Precedence: gpu.cci.io/count wins ("0" means none, whatever else is set); else
// CDI annotations cdi.k8s.io/* naming nvidia.com/gpu=<all|index|UUID> (keys
// cdi.k8s.io/vfio* are runtime-internal and ignored); else NVIDIA_VISIBLE_DEVICES
// in process.env ("all", index/UUID list; "none", "void" and "" mean no GPU).
// gpu.cci.io/model and gpu.cci.io/driver-version apply to whichever wins; set
// without any GPU request they are an error.
func ParseRequest(spec *specs.Spec) (*Request, error) {
	if spec == nil {
		return nil, nil
	}
	ann := spec.Annotations
	req := &Request{}
	if v, ok := ann[AnnotationModel]; ok {
		if !reModel.MatchString(v) {
			return nil, &RequestError{Field: AnnotationModel, Value: v, Reason: "is not a model name",
				Allowed: "letters, digits, space, '.', '_', '-', at most 64 characters, e.g. \"T4\", \"V100 32GB\""}
		}
		req.Model = v
	}
	if v, ok := ann[AnnotationDriverVersion]; ok {
		if !reDriver.MatchString(v) {
			return nil, &RequestError{Field: AnnotationDriverVersion, Value: v, Reason: "is not a driver version",
				Allowed: "dotted numbers such as 418.126 or 535.104.05"}
		}
		req.DriverVersion = v
	}
	found, err := parseSources(spec, req)
	if err != nil || !found {
		return nil, err
	}
	if req.Count == 0 && !req.All && len(req.IDs) == 0 {
		return nil, nil
	}
	return req, nil
}

// parseSources fills Count/All/IDs/Source; found=false when no source asks.
func parseSources(spec *specs.Spec, req *Request) (bool, error) {
	ann := spec.Annotations
	if v, ok := ann[AnnotationCount]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > MaxGPUsPerPod {
			return false, &RequestError{Field: AnnotationCount, Value: v, Reason: "is not a valid GPU count",
				Allowed: fmt.Sprintf("a whole number from 0 to %d", MaxGPUsPerPod)}
		}
		req.Count, req.Source = n, "annotation "+AnnotationCount
		return true, nil
	}
	keys := make([]string, 0, len(ann))
	for k := range ann {
		if strings.HasPrefix(k, CDIAnnotationPrefix) && !strings.HasPrefix(k, cdiVFIOPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var names []string
	var from []string
	for _, k := range keys {
		for _, dev := range strings.Split(ann[k], ",") {
			dev = strings.TrimSpace(dev)
			kind, name, ok := strings.Cut(dev, "=")
			if !ok || kind != CDIKindGPU {
				continue // another vendor's device, or not a CDI name
			}
			names = append(names, name)
			from = append(from, k)
		}
	}
	if len(names) > 0 {
		field := "annotation " + strings.Join(dedup(from), ", ")
		return true, setIDs(req, field, strings.Join(names, ","), names)
	}
	if spec.Process != nil {
		for _, kv := range spec.Process.Env {
			k, v, _ := strings.Cut(kv, "=")
			if k != EnvVisibleDevices {
				continue
			}
			if t := strings.TrimSpace(v); t != "" && t != "none" && t != "void" {
				return true, setIDs(req, "env "+EnvVisibleDevices, v, strings.Split(v, ","))
			}
			break // the first occurrence is the one getenv(3) sees
		}
	}
	if req.Model != "" || req.DriverVersion != "" {
		field, val := AnnotationModel, req.Model
		if val == "" {
			field, val = AnnotationDriverVersion, req.DriverVersion
		}
		return false, &RequestError{Field: field, Value: val, Reason: "is set but the pod asks for no GPU",
			Allowed: "together with " + AnnotationCount + ", " + EnvVisibleDevices + " or a cdi.k8s.io/* " + CDIKindGPU + " device"}
	}
	return false, nil
}

func setIDs(req *Request, field, value string, list []string) error {
	allowed := `"all", or GPU indexes ("0") or UUIDs ("GPU-...") separated by commas; MIG devices are not offered`
	req.Source = field
	var ids []string
	for _, id := range list {
		id = strings.TrimSpace(id)
		switch {
		case id == "all":
			req.All = true
		case reIndex.MatchString(id), reUUID.MatchString(id):
			ids = append(ids, id)
		default:
			return &RequestError{Field: field, Value: value, Reason: "does not name whole GPUs", Allowed: allowed}
		}
	}
	if req.All && len(ids) > 0 {
		return &RequestError{Field: field, Value: value, Reason: "mixes \"all\" with single GPUs", Allowed: allowed}
	}
	req.IDs = dedup(ids)
	if len(req.IDs) > MaxGPUsPerPod {
		return &RequestError{Field: field, Value: value, Reason: "names too many GPUs",
			Allowed: fmt.Sprintf("at most %d", MaxGPUsPerPod)}
	}
	return nil
}

func dedup(in []string) []string {
	seen := map[string]bool{}
	out := in[:0:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// ModelMatches reports whether an NVML model name satisfies a requested model:
// every word of want (split on space, '-', '_') is a word of have, case-insensitive.
// "V100 32GB" matches "Tesla V100-SXM2-32GB"; "P4" does not match "Tesla P40".
func ModelMatches(want, have string) bool {
	words := func(s string) []string {
		return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ' ' || r == '-' || r == '_' })
	}
	haveSet := map[string]bool{}
	for _, w := range words(have) {
		haveSet[w] = true
	}
	ws := words(want)
	for _, w := range ws {
		if !haveSet[w] {
			return false
		}
	}
	return len(ws) > 0
}
