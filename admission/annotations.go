package admission

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/sandbox"
)

// KnownAnnotations are the platform's pod annotations: every *.cci.io/* (or
// cci.io/*) key a pod may carry. Anything else in those domains is refused,
// so that a typo is an error at `kubectl apply`, not a silently ignored
// setting.
var KnownAnnotations = []string{
	sandbox.AnnotationHostPathReplacement,
	sandbox.AnnotationHostPathVolumes,
	AnnotationImageReplacement,
	sandbox.AnnotationContainers,
	sandbox.AnnotationShmSize,
	iothrottle.AnnotationRootfsReadBps,
	iothrottle.AnnotationRootfsWriteBps,
	iothrottle.AnnotationRootfsReadIOPS,
	iothrottle.AnnotationRootfsWriteIOPS,
	iothrottle.AnnotationStdioBps,
	logfwd.AnnotationPolicies,
	gpu.AnnotationCount,
	gpu.AnnotationModel,
	gpu.AnnotationDriverVersion,
	AnnotationEnablePodMetrics,
	AnnotationMetricsPort,
}

// IsPlatformAnnotation reports whether key is in the platform's annotation
// domains: its prefix (before "/") is cci.io or ends with .cci.io. These
// are the keys containerd hands to the shim (pod_annotations
// ["*.cci.io/*", "cci.io/*"]).
func IsPlatformAnnotation(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	return ok && (prefix == "cci.io" || strings.HasSuffix(prefix, ".cci.io"))
}

// ValidatePodAnnotations checks a pod's *.cci.io/* annotations with the
// parsers the shim itself uses, so a pod is refused at admission with the
// message the shim would give at RunPodSandbox or CreateContainer:
//   - unknown keys in the platform's domains (allow-list; the error lists
//     KnownAnnotations);
//   - coordinator.cci.io/hostpath-replacement, hostpath-volumes and
//     resources.cci.io/containers: the sandbox package's parsers;
//   - shm.cci.io/size: a positive memory quantity;
//   - throttle.cci.io/*: iothrottle.LimitsFromConfig against a node that sets
//     no limit, so format and keys are checked here and "may only lower the
//     node's limit" stays with the node, whose limits the webhook does not
//     know;
//   - logs.cci.io/policies: logfwd.ParsePolicies;
//   - gpu.cci.io/*: gpu.ParseRequest on the pod's annotations (what the shim
//     sees on the sandbox spec);
//   - monitoring.cci.io/*: R27 (see validatePodMetrics);
//   - coordinator.cci.io/image-replacement: ParseImageReplacement.
//
// Every problem is reported, one per line, in the order of KnownAnnotations
// after the unknown keys.
func ValidatePodAnnotations(ann map[string]string) error {
	var errs []error
	var unknown []string
	for k := range ann {
		if IsPlatformAnnotation(k) && !slices.Contains(KnownAnnotations, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		errs = append(errs, fmt.Errorf("annotation %q is not a platform annotation; allowed keys in the cci.io domains: %s",
			k, strings.Join(KnownAnnotations, ", ")))
	}
	check := func(key string, parse func(string) error) {
		if v, ok := ann[key]; ok {
			if err := parse(v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	check(sandbox.AnnotationHostPathReplacement, func(v string) error {
		_, err := sandbox.ParseHostPathReplacement(v)
		return err
	})
	check(sandbox.AnnotationHostPathVolumes, func(v string) error {
		_, err := sandbox.ParseHostPathVolumes(v)
		return err
	})
	check(AnnotationImageReplacement, func(v string) error {
		_, err := ParseImageReplacement(v)
		return err
	})
	check(sandbox.AnnotationContainers, func(v string) error {
		_, err := sandbox.ParseContainers(v)
		return err
	})
	check(sandbox.AnnotationShmSize, func(v string) error {
		_, err := sandbox.ParseShmSize(v)
		return err
	})
	if _, err := iothrottle.LimitsFromConfig(iothrottle.NodeLimits{}, ann); err != nil {
		errs = append(errs, err)
	}
	check(logfwd.AnnotationPolicies, func(v string) error {
		_, err := logfwd.ParsePolicies(v)
		return err
	})
	if _, err := gpu.ParseRequest(&specs.Spec{Annotations: ann}); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, validatePodMetrics(ann)...)
	return errors.Join(errs...)
}
