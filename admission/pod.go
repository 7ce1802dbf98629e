package admission

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"

	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/shm"
)

// DefaultRuntimeClass is the RuntimeClass of cci pods
// (packaging/kubernetes/runtimeclass.yaml).
const DefaultRuntimeClass = "cci"

// IsCCIPod reports whether pod runs in one of the given RuntimeClasses
// (those whose handler is cci).
func IsCCIPod(pod *corev1.Pod, runtimeClasses ...string) bool {
	return pod != nil && pod.Spec.RuntimeClassName != nil && slices.Contains(runtimeClasses, *pod.Spec.RuntimeClassName)
}

// Change is one image Mutate replaced, for logs.
type Change struct {
	Container string // container name
	From, To  string
}

// Mutate applies the platform's rewrites to a cci pod in place: R26 image
// replacement, then the hostpath-volumes and containers annotations (always
// overwritten; removed when there is nothing to write: no hostPath volume,
// or pod-level resources). old is the stored pod on UPDATE and nil on CREATE; on UPDATE only
// images that differ from old's (same container name and kind) are
// replaced. On error pod may be partly rewritten: callers deny the request.
func Mutate(pod, old *corev1.Pod) ([]Change, error) {
	var rules []ImageReplacement
	if v, ok := pod.Annotations[AnnotationImageReplacement]; ok {
		var err error
		if rules, err = ParseImageReplacement(v); err != nil {
			return nil, err
		}
	}
	var changes []Change
	replace := func(name string, image *string, oldImage string, hadOld bool) error {
		if hadOld && oldImage == *image {
			return nil
		}
		out, ok, err := ReplaceImage(*image, rules)
		if err != nil {
			return fmt.Errorf("container %q: %w", name, err)
		}
		if ok {
			changes = append(changes, Change{Container: name, From: *image, To: out})
			*image = out
		}
		return nil
	}
	oldImages := imagesOf(old)
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		o, had := oldImages["init/"+c.Name]
		if err := replace(c.Name, &c.Image, o, had); err != nil {
			return nil, err
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		o, had := oldImages["app/"+c.Name]
		if err := replace(c.Name, &c.Image, o, had); err != nil {
			return nil, err
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		c := &pod.Spec.EphemeralContainers[i]
		o, had := oldImages["ephemeral/"+c.Name]
		if err := replace(c.Name, &c.Image, o, had); err != nil {
			return nil, err
		}
	}

	hv, err := HostPathVolumes(pod)
	if err != nil {
		return nil, err
	}
	ca, err := ContainersAnnotation(pod)
	if err != nil {
		return nil, err
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	for key, v := range map[string]string{sandbox.AnnotationHostPathVolumes: hv, sandbox.AnnotationContainers: ca} {
		if v == "" {
			delete(pod.Annotations, key)
		} else {
			pod.Annotations[key] = v
		}
	}
	return changes, nil
}

func imagesOf(pod *corev1.Pod) map[string]string {
	m := map[string]string{}
	if pod == nil {
		return m
	}
	for _, c := range pod.Spec.InitContainers {
		m["init/"+c.Name] = c.Image
	}
	for _, c := range pod.Spec.Containers {
		m["app/"+c.Name] = c.Image
	}
	for _, c := range pod.Spec.EphemeralContainers {
		m["ephemeral/"+c.Name] = c.Image
	}
	return m
}

// defaultPodSize stands in for the node's default size of a pod whose
// containers are all BestEffort: the webhook does not know it, and such a
// pod has nothing to refuse.
var defaultPodSize = sandbox.Resources{MilliCPU: 1000, Memory: 2 * sandbox.GiB}

// Validate checks a cci pod as it will be stored (after every mutating
// webhook). old is the stored pod on UPDATE and nil on CREATE. It refuses:
//   - bad or unknown *.cci.io/* annotations (ValidatePodAnnotations); on
//     UPDATE only when they changed, so a pod admitted under older rules can
//     still be updated;
//   - hostpath-volumes or containers annotations that differ from what
//     Mutate writes (another webhook changed them afterwards); on UPDATE
//     only when they also differ from the stored pod's, so pods stored
//     before the webhook was installed stay updatable (the
//     pods/ephemeralcontainers subresource keeps the stored annotations);
//
// and on CREATE also:
//   - a mounted hostPath volume that no hostpath-replacement entry covers (R4);
//   - a pod whose size cannot be normalised (R5, the shim's message);
//   - a /dev/shm size above the normalised pod memory (R10, the shim's message);
//   - a container whose literal NVIDIA_VISIBLE_DEVICES the shim would refuse.
//
// All problems are reported, one per line.
func Validate(pod, old *corev1.Pod) error {
	var errs []error
	if old == nil || !maps.Equal(platformAnnotations(pod), platformAnnotations(old)) {
		if err := ValidatePodAnnotations(pod.Annotations); err != nil {
			errs = append(errs, err)
		}
	}
	written := func(key string, want string, err error) {
		got := pod.Annotations[key]
		switch {
		case err != nil:
			errs = append(errs, err)
		case got != want && (old == nil || got != old.Annotations[key]):
			errs = append(errs, writtenMismatch(key, got, want))
		}
	}
	hv, err := HostPathVolumes(pod)
	written(sandbox.AnnotationHostPathVolumes, hv, err)
	ca, err := ContainersAnnotation(pod)
	written(sandbox.AnnotationContainers, ca, err)
	if old == nil {
		errs = append(errs, validateCreate(pod, ca)...)
	}
	return errors.Join(errs...)
}

func writtenMismatch(key, got, want string) error {
	return fmt.Errorf("annotation %s=%q is not allowed; allowed: the value cci-webhook writes for this pod, %q "+
		"(it is set at admission; another mutating webhook must not change it)", key, got, want)
}

func platformAnnotations(pod *corev1.Pod) map[string]string {
	m := map[string]string{}
	for k, v := range pod.Annotations {
		if IsPlatformAnnotation(k) {
			m[k] = v
		}
	}
	return m
}

// validateCreate holds the checks that need the whole pod spec, which does
// not change after creation. Annotation errors were reported already: a
// check whose annotation does not parse is skipped.
func validateCreate(pod *corev1.Pod, containers string) []error {
	var errs []error
	if v, ok := pod.Annotations[sandbox.AnnotationHostPathReplacement]; ok {
		if repl, err := sandbox.ParseHostPathReplacement(v); err == nil {
			errs = append(errs, uncoveredHostPaths(pod, repl)...)
		}
	} else {
		errs = append(errs, uncoveredHostPaths(pod, nil)...)
	}
	if cs, err := sandbox.ParseContainers(containers); err == nil && len(cs) > 0 {
		size, err := sandbox.NormalisePodSize(cs, defaultPodSize)
		if err != nil {
			errs = append(errs, err)
		} else if v, ok := pod.Annotations[sandbox.AnnotationShmSize]; ok && !allBestEffort(size) {
			if n, err := sandbox.ParseShmSize(v); err == nil {
				if _, _, err := shm.Size(shm.Input{Annotation: n, PodMemory: size.Pod.Memory}); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	errs = append(errs, gpuEnvErrors(pod)...)
	errs = append(errs, podMetricsPortErrors(pod)...)
	return errs
}

func allBestEffort(s *sandbox.PodSize) bool {
	for _, c := range s.Containers {
		if !c.BestEffort {
			return false
		}
	}
	return true
}

// gpuEnvErrors runs gpu.ParseRequest on each container as the shim sees it
// (the pod's annotations and the container's environment); only literal env
// values are known at admission.
func gpuEnvErrors(pod *corev1.Pod) []error {
	var errs []error
	check := func(name string, env []corev1.EnvVar) {
		var kv []string
		for _, e := range env {
			if e.ValueFrom == nil {
				kv = append(kv, e.Name+"="+e.Value)
			}
		}
		spec := &specs.Spec{Annotations: pod.Annotations, Process: &specs.Process{Env: kv}}
		_, err := gpu.ParseRequest(spec)
		// Errors about the annotations were reported by ValidatePodAnnotations.
		if re := (*gpu.RequestError)(nil); errors.As(err, &re) && re.Field == "env "+gpu.EnvVisibleDevices {
			errs = append(errs, fmt.Errorf("container %q: %w", name, err))
		}
	}
	for _, c := range pod.Spec.InitContainers {
		check(c.Name, c.Env)
	}
	for _, c := range pod.Spec.Containers {
		check(c.Name, c.Env)
	}
	return errs
}
