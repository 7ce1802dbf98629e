package podmetrics

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Pod annotations of SPEC R27. Prometheus' Kubernetes pod discovery keeps a
// pod unless AnnotationEnable is exactly "false" and scrapes
// <pod IP>:<AnnotationPort, else DefaultPort>.
const (
	AnnotationEnable = "monitoring.cci.io/enable-pod-metrics"
	AnnotationPort   = "monitoring.cci.io/metrics-port"
)

// DefaultPort is where a pod serves its metrics unless AnnotationPort moves
// it; MinPort and MaxPort bound what AnnotationPort may say.
const (
	DefaultPort = 19100
	MinPort     = 1024
	MaxPort     = 65535
	// Path is the only path the endpoint serves.
	Path = "/metrics"
)

// Config is a pod's metrics endpoint: whether it is served and on which port.
type Config struct {
	Enabled bool
	Port    int
}

// DefaultConfig is the endpoint of a pod without annotations.
func DefaultConfig() Config { return Config{Enabled: true, Port: DefaultPort} }

// Error is a tenant-facing refusal of an R27 annotation: it names the field,
// the value found and what is allowed. It unwraps to
// errdefs.ErrInvalidArgument so the shim maps it to a gRPC code.
type Error struct {
	Field   string // "annotation monitoring.cci.io/metrics-port", ...
	Value   string
	Allowed string
	Reason  string // optional detail
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s %q is not allowed", e.Field, e.Value)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s + "; allowed: " + e.Allowed
}

func (e *Error) Unwrap() error { return errdefs.ErrInvalidArgument }

// allowedPort says what AnnotationPort accepts.
var allowedPort = fmt.Sprintf("a decimal TCP port from %d to %d that no container of the pod declares (default %d)", MinPort, MaxPort, DefaultPort)

// ParseAnnotations reads a pod's R27 annotations. Absent annotations give
// DefaultConfig. AnnotationEnable must be exactly "true" or "false": Prometheus'
// discovery drops only "false", so a "False" or "no" that the shim took for
// "off" would leave users scraping an endpoint that is not there.
// AnnotationPort must be a plain decimal number (no sign, no leading zero,
// no spaces) in [MinPort, MaxPort]; it is checked even when the endpoint is
// disabled, so a bad value never waits for the day it is turned on.
func ParseAnnotations(annotations map[string]string) (Config, error) {
	cfg := DefaultConfig()
	if v, ok := annotations[AnnotationEnable]; ok {
		switch v {
		case "true":
		case "false":
			cfg.Enabled = false
		default:
			return Config{}, &Error{Field: "annotation " + AnnotationEnable, Value: v, Allowed: `"true" or "false"`}
		}
	}
	if v, ok := annotations[AnnotationPort]; ok {
		port, err := parsePort(v)
		if err != nil {
			return Config{}, err
		}
		cfg.Port = port
	}
	return cfg, nil
}

func parsePort(v string) (int, error) {
	bad := func(reason string) error {
		return &Error{Field: "annotation " + AnnotationPort, Value: v, Allowed: allowedPort, Reason: reason}
	}
	if v == "" || len(v) > 5 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, bad("not a decimal number")
	}
	if v[0] == '0' {
		return 0, bad("leading zero")
	}
	port, err := strconv.Atoi(v)
	if err != nil {
		return 0, bad("not a decimal number")
	}
	if port < MinPort {
		return 0, bad(fmt.Sprintf("below %d: privileged ports are the containers'", MinPort))
	}
	if port > MaxPort {
		return 0, bad(fmt.Sprintf("above %d", MaxPort))
	}
	return port, nil
}

// ContainerPort is a port a container of the pod declares (Kubernetes'
// containers[].ports, which kubelet also hands to the runtime as the
// sandbox's port mappings).
type ContainerPort struct {
	Container string // may be empty when the source does not say
	Port      int32
	Protocol  string // "TCP", "UDP", "SCTP"; empty means TCP
}

// CheckPorts refuses an enabled endpoint whose port a container of the pod
// declares for TCP: the endpoint would take the port from the container.
// Ports nobody declares cannot be known before the containers run; a
// container that binds the metrics port anyway gets EADDRINUSE.
func (c Config) CheckPorts(ports []ContainerPort) error {
	if !c.Enabled {
		return nil
	}
	for _, p := range ports {
		if int(p.Port) != c.Port || !isTCP(p.Protocol) {
			continue
		}
		who := "a container of the pod"
		if p.Container != "" {
			who = fmt.Sprintf("container %q", p.Container)
		}
		if c.Port == DefaultPort {
			// The tenant did not choose the port: name their field.
			return &Error{
				Field:   "containers[].ports[].containerPort",
				Value:   strconv.Itoa(c.Port),
				Reason:  fmt.Sprintf("%s declares it; TCP port %d is the pod metrics endpoint's", who, DefaultPort),
				Allowed: fmt.Sprintf("any other port, or move the endpoint with annotation %s, or turn it off with %s: \"false\"", AnnotationPort, AnnotationEnable),
			}
		}
		return &Error{
			Field:   "annotation " + AnnotationPort,
			Value:   strconv.Itoa(c.Port),
			Reason:  fmt.Sprintf("%s declares TCP port %d", who, c.Port),
			Allowed: allowedPort,
		}
	}
	return nil
}

func isTCP(protocol string) bool {
	return protocol == "" || strings.EqualFold(protocol, "TCP")
}
