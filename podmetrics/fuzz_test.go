package podmetrics

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzRelayRespond: whatever request head a caller in the pod network sends
// through the in-sandbox relay, the shim answers with one well-formed HTTP
// response and never panics.
func FuzzRelayRespond(f *testing.F) {
	f.Add([]byte("GET /metrics HTTP/1.1\r\nHost: 10.0.0.5:19100\r\nAccept-Encoding: gzip\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n"))
	f.Add([]byte("\x00\xff garbage\r\n\r\n"))
	h := NewHandler(NewCollector(&fakeSource{s: fullSnapshot()}, nil), nil)
	f.Fuzz(func(t *testing.T, head []byte) {
		out := respond(head, h)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil {
			t.Fatalf("response to %q does not parse: %v\n%q", head, err, out)
		}
		if resp.StatusCode < 200 || resp.StatusCode > 599 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// FuzzPortsFromCRISandboxMetadata: the ports kubelet passes come from the
// tenant's pod spec; decoding containerd's record of them never panics.
func FuzzPortsFromCRISandboxMetadata(f *testing.F) {
	f.Add([]byte(`{"Version":"v1","Metadata":{"Config":{"port_mappings":[{"container_port":19100},{"protocol":1,"container_port":53}]}}}`))
	f.Add([]byte(`{"Version":"v1","Metadata":{}}`))
	f.Add([]byte(`{"Version":"v2"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ports, err := PortsFromCRISandboxMetadata(data)
		if err != nil {
			return
		}
		DefaultConfig().CheckPorts(ports)
	})
}
