package podstats

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestFromCRI(t *testing.T) {
	pod, c := FromCRI(map[string]string{
		"io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.sandbox-name": "web-0",
		"io.kubernetes.cri.sandbox-uid": "u-1", "io.kubernetes.cri.container-name": "app",
		"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "abc",
	})
	if pod != (PodIdentity{Namespace: "shop", Name: "web-0", UID: "u-1"}) || c != (ContainerIdentity{Name: "app", Type: ContainerTypeContainer}) {
		t.Fatalf("pod %+v container %+v", pod, c)
	}
	if pod, c := FromCRI(nil); pod != (PodIdentity{}) || c != (ContainerIdentity{}) {
		t.Fatalf("ctr container: %+v %+v", pod, c)
	}
}

// The file round-trips through ReadAll with the identity beside the stats.
func TestReadAll(t *testing.T) {
	dir := t.TempDir()
	in := Pod{PodIdentity: PodIdentity{Namespace: "shop", Name: "web-0", UID: "u-1"},
		Containers: map[string]Container{"c1": {ContainerIdentity: ContainerIdentity{Name: "app", Type: "container"}}}}
	data, _ := json.Marshal(in)
	if err := os.MkdirAll(filepath.Join(dir, "k8s.io", "sb1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "k8s.io", "sb1", File), data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := got["k8s.io/sb1"]
	if p.PodIdentity != in.PodIdentity || p.Containers["c1"].ContainerIdentity != in.Containers["c1"].ContainerIdentity {
		t.Fatalf("read %+v", got)
	}
	if string(data) == "" || !json.Valid(data) {
		t.Fatal("bad json")
	}
}
