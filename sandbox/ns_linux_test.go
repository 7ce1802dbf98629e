package sandbox

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestProcResolver(t *testing.T) {
	self, err := ReadNamespaces(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var net NSRef
	for _, r := range self {
		if r.Type == specs.NetworkNamespace {
			net = r
		}
	}
	if net.Ino == 0 {
		t.Fatalf("no network namespace in %+v", self)
	}
	// The same namespace by another path text is the same NSRef.
	got, err := ProcResolver{}.Resolve("/proc/thread-self/ns/net")
	if err != nil || !got.same(net) {
		t.Fatalf("thread-self: %+v %v, want %+v", got, err, net)
	}
	f := filepath.Join(t.TempDir(), "not-a-namespace")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (ProcResolver{}).Resolve(f); err == nil {
		t.Fatal("a regular file resolved as a namespace")
	}
	host, err := ReadHostNamespaces()
	if err != nil || len(host) < 6 || !host[0].same(self[0]) {
		t.Fatalf("host namespaces %+v %v", host, err)
	}
}
