package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/shim/podstats"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestLogCollectorMemory: the collector runs inside the pod's shim; with 100
// files written at once it may add at most 10 MiB to the shim's resident
// memory (R19 beyond: the service asks for 50 MB per policy). Two pods run
// side by side, one without a log policy; the difference of their shims'
// RSS is what the collector adds.
func TestLogCollectorMemory(t *testing.T) {
	env := startEnv(t, true) // the file sink is {{Dir}}/podlogs
	rs, _ := env.CRI()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 100 files, each appended to 20 times a second, for the pod's life.
	writer := `mkdir -p /var/log/app; i=0; while :; do j=0; while [ $j -lt 100 ]; do
echo "line $i of file $j with some payload to make it a realistic log line" >> /var/log/app/f$j.log; j=$((j+1)); done
i=$((i+1)); sleep 0.05; done`
	pods := map[string]string{} // name -> sandbox id
	for _, name := range []string{"plain", "logged"} {
		cfg := &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "mem", Uid: podUID(name)},
			LogDirectory: filepath.Join(env.Dir, "pod-logs", name),
			Linux:        &runtimeapi.LinuxPodSandboxConfig{},
		}
		if name == "logged" {
			cfg.Annotations = map[string]string{"logs.cci.io/policies": `[{"container":"app","paths":["/var/log/app/*.log"]}]`}
		}
		sb, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: criHandler})
		if err != nil {
			t.Fatalf("RunPodSandbox %s: %v", name, err)
		}
		cr, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, SandboxConfig: cfg,
			Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
				Image: &runtimeapi.ImageSpec{Image: env.Image}, Command: []string{"sh", "-c", writer}, Annotations: cfg.Annotations}})
		if err != nil {
			t.Fatalf("CreateContainer %s: %v", name, err)
		}
		if _, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			t.Fatalf("StartContainer %s: %v", name, err)
		}
		pods[name] = sb.PodSandboxId
	}
	time.Sleep(8 * time.Second) // past a poll interval, with every file followed
	rss := map[string]int64{}
	for _, pid := range env.ShimPIDs(e2eenv.CCIShimBinary) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		for name, id := range pods {
			if strings.Contains(string(cmdline), id) {
				rss[name] = e2eenv.RSS(pid)
			}
		}
	}
	if rss["plain"] == 0 || rss["logged"] == 0 {
		t.Fatalf("shim RSS not found: %v", rss)
	}
	stats, err := podstats.ReadAll(env.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if l := stats["k8s.io/"+pods["logged"]].Logs; l == nil || l.Files != 100 || l.Lines == 0 {
		t.Fatalf("collector stats = %+v, want 100 files followed and lines delivered", l)
	}
	added := rss["logged"] - rss["plain"]
	t.Logf("cci shim RSS: without log policy %d KiB, collecting 100 active files %d KiB: the collector adds %d KiB",
		rss["plain"]>>10, rss["logged"]>>10, added>>10)
	if added > 10<<20 {
		t.Errorf("the log collector adds %d KiB to the pod's shim, want under 10 MiB", added>>10)
	}
	for _, id := range pods {
		rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
		rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	}
	assertNoLeaks(t, env)
}
