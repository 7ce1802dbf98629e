package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/cci-shim/cci-shim/config"
)

// unitRoot is a root for systemd-analyze: the host's system units, ours, and
// executables where the units expect them.
func unitRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Skipf("no system units to verify against (%v: %s)", err, out)
	}
	for _, exe := range []string{"usr/local/bin/cci-agent", "usr/local/lib/cci-shim/thinpool.sh"} {
		p := filepath.Join(root, exe)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	units, _ := filepath.Glob("systemd/*.service")
	dst := filepath.Join(root, "etc/systemd/system")
	os.MkdirAll(dst, 0o755)
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(u)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// systemd-analyze verifies both units without a word, and rates the
// agent's sandboxing.
func TestSystemdUnits(t *testing.T) {
	sa := tool(t, "systemd-analyze")
	root := unitRoot(t)
	out, err := exec.Command(sa, "verify", "--man=no", "--root="+root,
		"/etc/systemd/system/cci-agent.service", "/etc/systemd/system/cci-thinpool.service").CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", "--root="+root, "/etc/systemd/system/cci-agent.service").CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for cci-agent.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	// 10 is an unsandboxed root service; below 4 is systemd's "OK".
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score >= 4 {
		t.Errorf("cci-agent.service exposure %.1f, want < 4 (hardened)\n%s", score, out)
	}
	t.Logf("cci-agent.service exposure level %s", m[1])
}

// The directories systemd makes writable for the agent are the ones the
// default node config names; the unit says what the agent changes.
func TestAgentUnitMatchesConfig(t *testing.T) {
	unit := string(readFile(t, "systemd/cci-agent.service"))
	key := func(k string) string {
		m := regexp.MustCompile(`(?m)^` + k + `=(.*)$`).FindStringSubmatch(unit)
		if m == nil {
			t.Fatalf("cci-agent.service has no %s=", k)
		}
		return m[1]
	}
	c := config.Default()
	if err := config.Parse(nil, &c); err != nil {
		t.Fatal(err)
	}
	if d := "/run/" + key("RuntimeDirectory"); d != c.StateDir {
		t.Errorf("RuntimeDirectory gives %s, state_dir is %s", d, c.StateDir)
	}
	if d := "/var/lib/" + key("StateDirectory"); !strings.HasPrefix(c.GPU.StateDir, d+"/") || !strings.HasPrefix(c.Policy.VolumeDir, d+"/") {
		t.Errorf("StateDirectory gives %s, gpu.state_dir is %s, policy.volume_dir %s", d, c.GPU.StateDir, c.Policy.VolumeDir)
	}
	if d := "/var/log/" + key("LogsDirectory"); d != c.Logs.FileDir {
		t.Errorf("LogsDirectory gives %s, logs.file_dir is %s", d, c.Logs.FileDir)
	}
	if key("ProtectSystem") != "strict" || key("RuntimeDirectoryPreserve") != "yes" {
		t.Error("the unit must be ProtectSystem=strict and keep /run/cci-shim when it stops")
	}
	if strings.Contains(unit, "changes nothing") {
		t.Error("the unit claims the agent changes nothing; it writes the GPU ledger")
	}
	if !strings.Contains(key("ExecStart"), "--config "+config.DefaultPath+" serve") {
		t.Errorf("ExecStart %q does not read %s", key("ExecStart"), config.DefaultPath)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRuntimeClass(t *testing.T) {
	var rc struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Handler    string `yaml:"handler"`
		Overhead   struct {
			PodFixed map[string]string `yaml:"podFixed"`
		} `yaml:"overhead"`
		Scheduling struct {
			NodeSelector map[string]string `yaml:"nodeSelector"`
		} `yaml:"scheduling"`
	}
	data := readFile(t, "kubernetes/runtimeclass.yaml")
	if err := yaml.Unmarshal(data, &rc); err != nil {
		t.Fatal(err)
	}
	if rc.APIVersion != "node.k8s.io/v1" || rc.Kind != "RuntimeClass" || rc.Handler != "cci" {
		t.Errorf("runtimeclass %+v", rc)
	}
	if rc.Overhead.PodFixed["memory"] == "" || rc.Overhead.PodFixed["cpu"] == "" || !strings.Contains(string(data), "ccibench") {
		t.Errorf("overhead.podFixed %v: want memory and cpu, and where the figure comes from", rc.Overhead.PodFixed)
	}
	// Every node selector is one the install steps tell the operator to set.
	readme := string(readFile(t, "../README.md"))
	for k, v := range rc.Scheduling.NodeSelector {
		if label := "kubectl label node"; !strings.Contains(readme, label) || !strings.Contains(readme, k+"="+v) {
			t.Errorf("the RuntimeClass selects nodes with %s=%s, which README's install steps do not label", k, v)
		}
	}
}
