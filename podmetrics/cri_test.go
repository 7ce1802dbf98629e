package podmetrics

import (
	"encoding/json"
	"reflect"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criMetadata encodes a sandbox config the way containerd's CRI plugin
// stores it in the sandbox container's extension: its Metadata struct (which
// holds the *runtime.PodSandboxConfig) marshalled by encoding/json under a
// version.
func criMetadata(t *testing.T, version string, cfg *runtimeapi.PodSandboxConfig) []byte {
	t.Helper()
	type metadata struct {
		ID        string
		Name      string
		Config    *runtimeapi.PodSandboxConfig
		NetNSPath string
		IP        string
	}
	b, err := json.Marshal(struct {
		Version  string
		Metadata metadata
	}{version, metadata{ID: "abc", Name: "web_default_uid_0", Config: cfg, NetNSPath: "/var/run/netns/cni-1", IP: "10.0.0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPortsFromCRISandboxMetadata(t *testing.T) {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid"},
		PortMappings: []*runtimeapi.PortMapping{
			{ContainerPort: 8080}, // TCP, not published
			{ContainerPort: 53, Protocol: runtimeapi.Protocol_UDP},     // UDP
			{ContainerPort: 19100, HostPort: 30000, HostIp: "0.0.0.0"}, // published
			{ContainerPort: 3868, Protocol: runtimeapi.Protocol_SCTP},
		},
	}
	got, err := PortsFromCRISandboxMetadata(criMetadata(t, "v1", cfg))
	if err != nil {
		t.Fatal(err)
	}
	want := []ContainerPort{{Port: 8080, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}, {Port: 19100, Protocol: "TCP"}, {Port: 3868, Protocol: "SCTP"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ports = %+v; want %+v", got, want)
	}
	if err := DefaultConfig().CheckPorts(got); err == nil {
		t.Error("CheckPorts accepted a pod declaring 19100")
	}

	if got, err := PortsFromCRISandboxMetadata(criMetadata(t, "v1", &runtimeapi.PodSandboxConfig{})); err != nil || len(got) != 0 {
		t.Errorf("no port mappings: %+v, %v", got, err)
	}
	if got, err := PortsFromCRISandboxMetadata(criMetadata(t, "v1", nil)); err != nil || len(got) != 0 {
		t.Errorf("no config: %+v, %v", got, err)
	}
	if _, err := PortsFromCRISandboxMetadata(criMetadata(t, "v2", cfg)); err == nil {
		t.Error("unknown version accepted")
	}
	if _, err := PortsFromCRISandboxMetadata([]byte("{")); err == nil {
		t.Error("bad JSON accepted")
	}
}
