package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// criHandler is the RuntimeClass handler containerd maps to the cci runtime.
const criHandler = "cci"

// TestCRIPod drives a two-container pod through the CRI API, the calls
// crictl and kubelet make, and checks that one cci shim and one backend shim
// serve the whole pod (R1, R22).
func TestCRIPod(t *testing.T) {
	env := startEnv(t, true)
	rs, _ := env.CRI()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	logDir := filepath.Join(env.Dir, "pod-logs")
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "demo", Namespace: "default", Uid: podUID("demo")},
		LogDirectory: logDir,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	sb, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: criHandler})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, env.ContainerdLog())
	}
	var ids []string
	for _, name := range []string{"app", "sidecar"} {
		cr, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: sb.PodSandboxId,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: name},
				Image:    &runtimeapi.ImageSpec{Image: env.Image},
				Command:  []string{"sh", "-c", "echo hello-from-" + name + "; while :; do sleep 1; done"},
				LogPath:  name + ".log",
			},
			SandboxConfig: podCfg,
		})
		if err != nil {
			t.Fatalf("CreateContainer %s: %v", name, err)
		}
		if _, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			t.Fatalf("StartContainer %s: %v", name, err)
		}
		ids = append(ids, cr.ContainerId)
	}

	ex, err := rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ids[0], Cmd: []string{"sh", "-c", "echo exec-out; echo exec-err >&2; exit 3"}, Timeout: 20})
	if err != nil {
		t.Fatalf("ExecSync: %v", err)
	}
	if ex.ExitCode != 3 || string(ex.Stdout) != "exec-out\n" || string(ex.Stderr) != "exec-err\n" {
		t.Errorf("ExecSync = code %d, stdout %q, stderr %q", ex.ExitCode, ex.Stdout, ex.Stderr)
	}
	for _, id := range ids {
		st, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("ContainerStatus %s: %v %v", id, err, st.GetStatus().GetState())
		}
	}
	for _, name := range []string{"app", "sidecar"} {
		path := filepath.Join(logDir, name+".log")
		if !waitFor(10*time.Second, func() bool {
			b, _ := os.ReadFile(path)
			return strings.Contains(string(b), " stdout F hello-from-"+name)
		}) {
			b, _ := os.ReadFile(path)
			t.Errorf("CRI log %s = %q, want a stdout line hello-from-%s", path, b, name)
		}
	}
	// One shim process serves the whole pod: the runc backend's task
	// service runs inside the cci shim (Traits().InProcess).
	cci, runc := env.ShimPIDs(e2eenv.CCIShimBinary), env.ShimPIDs(e2eenv.RuncShimBinary)
	if len(cci) != 1 || len(runc) != 0 {
		t.Errorf("shim processes serving the pod: cci %v, runc %v; want one cci shim and no runc shim", cci, runc)
	} else {
		t.Logf("one cci shim (pid %d, RSS %d KiB) serves the pod, the runc task service in process", cci[0], e2eenv.RSS(cci[0])>>10)
	}

	if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	assertNoLeaks(t, env)
}
