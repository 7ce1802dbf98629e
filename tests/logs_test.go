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
)

// logRecord is a line of the file sink.
type logRecord struct {
	Namespace, Pod, Container, Path, Log string
	PodUID                               string `json:"pod_uid"`
}

// TestLogCollection: a pod declares /var/log/app/*.log; its container writes
// and rotates logs (rename to a name the glob still matches, and a new file
// that lives a moment) and plants a symlink to a host file. Every line
// reaches the sink exactly once, tagged with the pod's identity; the host
// file is never read (R15-R20).
func TestLogCollection(t *testing.T) { forEachBackend(t, testLogCollection) }

func testLogCollection(t *testing.T, b testBackend) {
	env := b.startEnv(t, true) // the file sink is {{Dir}}/podlogs
	rs, _ := env.CRI()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	secret := filepath.Join(env.Dir, "host-secret.txt")
	if err := os.WriteFile(secret, []byte("HOST-SECRET-LINE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "logger", Namespace: "team-a", Uid: podUID("logger")},
		LogDirectory: filepath.Join(env.Dir, "pod-logs"),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
		Annotations: map[string]string{
			"logs.cci.io/policies": `[{"container":"app","paths":["/var/log/app/*.log"]}]`,
		},
	}
	sb, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: criHandler})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	// 300 lines; every 100 the file is renamed to test.N.log (still *.log)
	// and a fresh test.log starts; a short-lived file is written and
	// removed at once; a symlink to the host file is planted.
	const n = 300
	script := fmt.Sprintf(`cd /var/log/app || exit 1
ln -s %s evil.log
i=0; while [ $i -lt %d ]; do
  echo "line-$i" >> test.log; i=$((i+1))
  if [ $((i %% 100)) -eq 0 ]; then mv test.log test.$i.log; fi
done
echo short-lived-1 > brief.log; echo short-lived-2 >> brief.log; sleep 0.1; rm brief.log
echo done > /tmp/done; sleep 3600`, secret, n)
	cr, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: sb.PodSandboxId,
		Config: &runtimeapi.ContainerConfig{
			Metadata:    &runtimeapi.ContainerMetadata{Name: "app"},
			Image:       &runtimeapi.ImageSpec{Image: env.Image},
			Command:     []string{"sh", "-c", script},
			LogPath:     "app.log",
			Annotations: podCfg.Annotations,
		},
		SandboxConfig: podCfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	if !waitFor(30*time.Second, func() bool {
		r, err := rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"cat", "/tmp/done"}, Timeout: 5})
		return err == nil && r.ExitCode == 0
	}) {
		t.Fatal("the container did not finish writing its logs")
	}
	// The pod goes away: the collector drains the volume before removal.
	if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}

	// Sinks are named by containerd namespace and pod sandbox id, never by
	// the tenant's names, which only appear inside the records.
	sink := filepath.Join(env.Dir, "podlogs", sinkName(t, sb.PodSandboxId))
	if _, err := os.Stat(sink); err != nil {
		t.Fatalf("file sink: %v", err)
	}
	counts := map[string]int{}
	for _, r := range sinkRecords(t, sink) {
		if r.Namespace != "team-a" || r.Pod != "logger" || r.PodUID != podUID("logger") || r.Container != "app" {
			t.Errorf("record not tagged with the pod's identity: %+v", r)
		}
		if !strings.HasPrefix(r.Path, "/var/log/app/") {
			t.Errorf("record path %q is not the container path", r.Path)
		}
		if strings.Contains(r.Log, "HOST-SECRET") {
			t.Errorf("the collector followed a planted symlink to a host file: %+v", r)
		}
		counts[r.Log]++
	}
	for i := 0; i < n; i++ {
		if c := counts[fmt.Sprintf("line-%d", i)]; c != 1 {
			t.Errorf("line-%d arrived %d times, want exactly once", i, c)
		}
	}
	for _, l := range []string{"short-lived-1", "short-lived-2"} {
		if counts[l] != 1 {
			t.Errorf("%s (a file that lived a moment) arrived %d times, want once", l, counts[l])
		}
	}
	t.Logf("%d distinct lines at the sink from %s", len(counts), sink)
	assertNoLeaks(t, env)
}
