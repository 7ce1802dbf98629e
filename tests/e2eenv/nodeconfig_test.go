package e2eenv

import (
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/config"
)

// The env's node config, with what its users add (dotted keys into the
// base's tables, then tables), parses with the shim's own loader and keeps
// every path a shim writes inside the env.
func TestNodeConfigBase(t *testing.T) {
	e := &Env{Dir: "/tmp/cci-e2e-1", StateDir: "/tmp/cci-e2e-1/cci"}
	extra := "gpu.inventory = \"fake\"\ngpu.fake_fixture = \"/f.json\"\nbackend.binary = \"sh\"\n" +
		"[gpu.drivers.\"535.104.05\"]\nlib_dir = \"/l\"\nbin_dir = \"/b\"\n[throttle]\nstdio_bps = 0\n"
	cfg := config.Default()
	if err := config.Parse([]byte(e.expand(e.nodeConfig()+extra)), &cfg); err != nil {
		t.Fatalf("node config: %v", err)
	}
	for name, path := range map[string]string{
		"state_dir": cfg.StateDir, "policy.volume_dir": cfg.Policy.VolumeDir, "policy.kubelet_root": cfg.Policy.KubeletRoot,
		"policy.containerd_root": cfg.Policy.ContainerdRoot, "policy.containerd_state": cfg.Policy.ContainerdState,
		"logs.file_dir": cfg.Logs.FileDir, "gpu.state_dir": cfg.GPU.StateDir, "backend.runc_root": cfg.Backend.RuncRoot,
	} {
		if !strings.HasPrefix(path, e.Dir+"/") {
			t.Errorf("%s = %q: outside the env", name, path)
		}
	}
	if cfg.Backend.Kind != config.BackendRunc || cfg.Backend.Binary != "sh" || cfg.GPU.Inventory != "fake" ||
		cfg.GPU.Drivers["535.104.05"].LibDir != "/l" || cfg.Throttle.StdioBps != 0 {
		t.Errorf("additions lost: %+v", cfg)
	}
}

// With DefaultPolicyRoots the node config names none of the roots, so the
// shim's defaults apply, and still every path a shim writes is in the env.
func TestNodeConfigDefaultPolicyRoots(t *testing.T) {
	e := &Env{Dir: "/tmp/cci-e2e-1", StateDir: "/tmp/cci-e2e-1/cci", opts: Options{DefaultPolicyRoots: true}}
	cfg := config.Default()
	if err := config.Parse([]byte(e.expand(e.nodeConfig())), &cfg); err != nil {
		t.Fatalf("node config: %v", err)
	}
	def := config.Default()
	if cfg.Policy.KubeletRoot != def.Policy.KubeletRoot || cfg.Policy.ContainerdRoot != def.Policy.ContainerdRoot ||
		cfg.Policy.ContainerdState != def.Policy.ContainerdState {
		t.Errorf("policy roots = %q, %q, %q; want the defaults", cfg.Policy.KubeletRoot, cfg.Policy.ContainerdRoot, cfg.Policy.ContainerdState)
	}
	for name, path := range map[string]string{
		"state_dir": cfg.StateDir, "policy.volume_dir": cfg.Policy.VolumeDir, "logs.file_dir": cfg.Logs.FileDir,
		"gpu.state_dir": cfg.GPU.StateDir, "backend.runc_root": cfg.Backend.RuncRoot,
	} {
		if !strings.HasPrefix(path, e.Dir+"/") {
			t.Errorf("%s = %q: outside the env", name, path)
		}
	}
}
