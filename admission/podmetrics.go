package admission

import (
	"fmt"
	"strconv"
)

// R27's pod annotations.
//
// PLUG-IN POINT (podmetrics): package podmetrics, being written on another
// branch, owns R27 and its parser. It was not on main when this was written,
// so validatePodMetrics checks the two annotations per SPEC R27 here. When
// podmetrics lands: delete these constants and validatePodMetrics's body and
// call podmetrics' parser instead (one parser, shared with the shim), keeping
// the keys in KnownAnnotations.
const (
	AnnotationEnablePodMetrics = "monitoring.cci.io/enable-pod-metrics"
	AnnotationMetricsPort      = "monitoring.cci.io/metrics-port"
)

// validatePodMetrics: enable-pod-metrics is "true" or "false";
// metrics-port is a decimal TCP port 1–65535.
func validatePodMetrics(ann map[string]string) []error {
	var errs []error
	if v, ok := ann[AnnotationEnablePodMetrics]; ok && v != "true" && v != "false" {
		errs = append(errs, fmt.Errorf("annotation %s=%q is not allowed; allowed: \"true\" or \"false\"", AnnotationEnablePodMetrics, v))
	}
	if v, ok := ann[AnnotationMetricsPort]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != v {
			errs = append(errs, fmt.Errorf("annotation %s=%q is not allowed; allowed: a TCP port number from 1 to 65535 (default 19100)", AnnotationMetricsPort, v))
		}
	}
	return errs
}
