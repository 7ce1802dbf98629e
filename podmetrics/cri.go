package podmetrics

import (
	"encoding/json"
	"fmt"
)

// CRISandboxMetadataExtension is the extension containerd's CRI plugin keeps
// on a pod sandbox's container record: its sandbox store entry, including the
// PodSandboxConfig kubelet sent. The OCI spec the shim receives carries no
// ports, but that config does: kubelet lists every containers[].ports entry
// of the pod in port_mappings (host_port 0 when the port is not published
// on the host). Only the CRI plugin's podsandbox controller writes it.
const CRISandboxMetadataExtension = "io.cri-containerd.sandbox.metadata"

// criSandboxMetadata is the part of containerd's sandbox store entry
// (internal/cri/store/sandbox.Metadata, JSON-encoded with a version) that the
// port check reads. Field names are those encoding/json gives the CRI API's
// generated types.
type criSandboxMetadata struct {
	Version  string
	Metadata struct {
		Config *struct {
			PortMappings []struct {
				Protocol      int32 `json:"protocol"`
				ContainerPort int32 `json:"container_port"`
			} `json:"port_mappings"`
		}
	}
}

// criProtocols maps the CRI API's Protocol enum to names.
var criProtocols = map[int32]string{0: "TCP", 1: "UDP", 2: "SCTP"}

// PortsFromCRISandboxMetadata returns the container ports declared in the
// value of a sandbox's CRISandboxMetadataExtension.
func PortsFromCRISandboxMetadata(data []byte) ([]ContainerPort, error) {
	var m criSandboxMetadata
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("decoding CRI sandbox metadata: %w", err)
	}
	if m.Version != "v1" {
		return nil, fmt.Errorf("CRI sandbox metadata version %q: only \"v1\" is known", m.Version)
	}
	if m.Metadata.Config == nil {
		return nil, nil
	}
	var ports []ContainerPort
	for _, pm := range m.Metadata.Config.PortMappings {
		proto, ok := criProtocols[pm.Protocol]
		if !ok {
			proto = fmt.Sprintf("protocol-%d", pm.Protocol)
		}
		ports = append(ports, ContainerPort{Port: pm.ContainerPort, Protocol: proto})
	}
	return ports, nil
}
