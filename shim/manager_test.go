package shim

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// TestDeleteSubcommandAndLiveShim: containerd runs the delete subcommand
// whenever a container's connection closes. While the pod's shim is alive
// and other containers hold resources, it serves the pod: the subcommand
// returns at once and touches nothing (a pod's stop used to wait
// shimTeardownWait per container here). On the shim's last container it
// waits for the shim's own teardown, then releases what is left.
func TestDeleteSubcommandAndLiveShim(t *testing.T) {
	tmp := t.TempDir()
	state := filepath.Join(tmp, "state")
	cfgPath := filepath.Join(tmp, "config.toml")
	if err := os.WriteFile(cfgPath, []byte("state_dir = \""+state+"\"\n[backend]\nkind = \"runc\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(tmp, "bundle")
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		configPathFile: cfgPath,
		"config.json":  `{"annotations":{"` + annotationSandboxID + `":"pod1"}}`,
	} {
		if err := os.WriteFile(filepath.Join(bundle, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(bundle)
	podDir := filepath.Join(state, "ns1", "pod1")
	sandboxDir := filepath.Join(podDir, "sandbox-dir")
	if err := os.MkdirAll(sandboxDir, 0o700); err != nil {
		t.Fatal(err)
	}

	shimProc := exec.Command("sleep", "60") // the pod's live shim
	if err := shimProc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { shimProc.Wait(); close(exited) }()
	t.Cleanup(func() { shimProc.Process.Kill(); <-exited })
	self, err := identify(shimProc.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	o, err := loadOwner(podDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.add(resource{Kind: resShim, Proc: self, Address: filepath.Join(tmp, "shim.sock")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := o.add(resource{Kind: resDir, Container: "pod1", Path: sandboxDir}, nil); err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "ns1")
	m := &manager{}

	// The app container was deleted; the shim serves the sandbox.
	began := time.Now()
	if _, err := m.Stop(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took >= shimTeardownWait {
		t.Errorf("delete of a container while the shim serves the pod took %v: it waited for the shim", took)
	}
	if recs := readRecords(t, podDir); len(recs) != 2 {
		t.Errorf("records after deleting app = %+v, want the shim's and the sandbox's untouched", recs)
	}
	if _, err := os.Stat(sandboxDir); err != nil {
		t.Errorf("the sandbox's dir: %v", err)
	}

	// The sandbox: its resources released by the shim, which tears down.
	if err := o.releaseContainer(ctx, "pod1"); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, func() { shimProc.Process.Kill() })
	began = time.Now()
	if _, err := m.Stop(ctx, "pod1"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took < 250*time.Millisecond {
		t.Errorf("delete of the last container returned after %v, before the shim's teardown ended", took)
	}
	if _, err := os.Stat(podDir); !os.IsNotExist(err) {
		t.Errorf("pod state dir after the last delete: %v, want it removed", err)
	}
}
