package crictl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A fake crictl that logs its arguments and answers like the real one.
const fake = `#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls"
case "$3" in
runp) echo pod-123 ;;
create) echo ctr-456 ;;
start) echo ctr-456 ;;
fail) echo "rpc error: code = InvalidArgument" >&2; exit 1 ;;
esac
`

func TestClient(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "crictl")
	if err := os.WriteFile(bin, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := Find("/nonexistent", dir); err != nil || p != bin {
		t.Fatalf("Find = %q, %v", p, err)
	}
	c, err := New(bin, "/run/c.sock", dir)
	if err != nil {
		t.Fatal(err)
	}
	pod := Pod{Metadata: Metadata{Name: "web", Namespace: "shop", UID: "u1"}, LogDirectory: "/l",
		Annotations: map[string]string{"shm.cci.io/size": "128Mi"}, Linux: &PodLinux{Sysctls: map[string]string{"net.core.somaxconn": "1024"}}}
	id, err := c.RunPod(pod, "cci")
	if err != nil || id != "pod-123" {
		t.Fatalf("RunPod = %q, %v", id, err)
	}
	cid, err := c.StartContainer(id, pod, Container{Metadata: Metadata{Name: "app"}, Image: Image{Image: "busybox"}, Command: []string{"sh"}})
	if err != nil || cid != "ctr-456" {
		t.Fatalf("StartContainer = %q, %v", cid, err)
	}
	if _, err := c.Run("fail"); err == nil || !strings.Contains(err.Error(), "crictl fail: exit status 1: rpc error: code = InvalidArgument") {
		t.Fatalf("err = %v", err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	cfg := filepath.Join(dir, "crictl.yaml")
	for _, w := range []string{"--config " + cfg + " runp --runtime cci " + filepath.Join(dir, "pod-web.json"),
		"--config " + cfg + " create --no-pull pod-123 " + filepath.Join(dir, "ctr-web-app.json") + " " + filepath.Join(dir, "pod-web.json"),
		"--config " + cfg + " start ctr-456"} {
		if !strings.Contains(string(calls), w) {
			t.Errorf("calls lack %q:\n%s", w, calls)
		}
	}
	// crictl reads CRI's JSON field names.
	var m map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, "pod-web.json"))
	if err := json.Unmarshal(data, &m); err != nil || m["log_directory"] != "/l" || m["metadata"].(map[string]any)["uid"] != "u1" {
		t.Fatalf("pod json %s", data)
	}
	if y, _ := os.ReadFile(cfg); !strings.Contains(string(y), "runtime-endpoint: unix:///run/c.sock") {
		t.Fatalf("config %s", y)
	}
}
