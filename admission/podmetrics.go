package admission

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/cci-shim/cci-shim/podmetrics"
)

// R27's pod annotations, parsed by package podmetrics: one parser, the
// shim's.
const (
	AnnotationEnablePodMetrics = podmetrics.AnnotationEnable
	AnnotationMetricsPort      = podmetrics.AnnotationPort
)

// validatePodMetrics checks the R27 annotations as the shim does.
func validatePodMetrics(ann map[string]string) []error {
	if _, err := podmetrics.ParseAnnotations(ann); err != nil {
		return []error{err}
	}
	return nil
}

// podMetricsPortErrors refuses a metrics port a container of the pod
// declares (R27): at admission the pod spec says it, as the shim learns it
// from CRI's sandbox config.
func podMetricsPortErrors(pod *corev1.Pod) []error {
	cfg, err := podmetrics.ParseAnnotations(pod.Annotations)
	if err != nil {
		return nil // reported by validatePodMetrics
	}
	var ports []podmetrics.ContainerPort
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				ports = append(ports, podmetrics.ContainerPort{Container: c.Name, Port: p.ContainerPort, Protocol: string(p.Protocol)})
			}
		}
	}
	if err := cfg.CheckPorts(ports); err != nil {
		return []error{err}
	}
	return nil
}
