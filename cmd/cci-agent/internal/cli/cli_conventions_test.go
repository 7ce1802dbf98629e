package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
	"github.com/cci-shim/cci-shim/internal/version"
)

func run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// --help prints once, to stdout, exits 0 and does nothing else; every
// command has its own help; --version and version print cci-shim's version.
func TestHelpAndVersion(t *testing.T) {
	old := version.Version
	version.Version = "v1.2.3-test"
	defer func() { version.Version = old }()
	for _, tc := range []struct {
		args []string
		head string // the help's first line
	}{
		{[]string{"--help"}, "cci-agent — the cci-shim node agent."},
		{[]string{"-h"}, "cci-agent — the cci-shim node agent."},
		{[]string{"help"}, "cci-agent — the cci-shim node agent."},
		{[]string{"check", "--help"}, "Usage: cci-agent [global flags] check [--json]"},
		{[]string{"env", "-h"}, "Usage: cci-agent [global flags] env [--json]"},
		{[]string{"serve", "--help"}, "Usage: cci-agent [global flags] serve [--listen ADDRESS]"},
		{[]string{"gpus", "--help"}, "Usage: cci-agent [global flags] gpus"},
		// Help has no side effects, even with a config that does not exist.
		{[]string{"--config", "/nonexistent.toml", "serve", "--help"}, "Usage: cci-agent [global flags] serve"},
	} {
		code, out, errOut := run(tc.args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, tc.head) {
			t.Errorf("%v: code %d, stderr %q, stdout starts %q", tc.args, code, errOut, firstLine(out))
		}
		if n := strings.Count(out, firstLine(out)); n != 1 {
			t.Errorf("%v: help printed %d times", tc.args, n)
		}
	}
	for _, args := range [][]string{{"--version"}, {"-v"}, {"version"}} {
		code, out, errOut := run(args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "cci-agent (cci-shim) v1.2.3-test\n") || !strings.Contains(out, "containerd: ") {
			t.Errorf("%v: code %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	for _, args := range [][]string{{"--frobnicate"}, {"check", "--frobnicate"}, {"check", "extra"}} {
		code, out, errOut := run(args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "--help") {
			t.Errorf("%v: code %d, stdout %q, stderr %q: want 2 and a hint", args, code, out, errOut)
		}
	}
}

func TestCheckWithBrokenConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte("backend.kind = \"runc\"\n[throttle]\nstdio_bps = \"fast\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run("--config", p, "check", "--json")
	var rep checkReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if code != 1 || rep.ExitCode != 1 || rep.Status != checks.Fail || rep.NodeConfig.Path != p || len(rep.Checks) != 1 ||
		!strings.Contains(rep.Checks[0].Detail, p+":3:13: throttle.stdio_bps") {
		t.Fatalf("code %d, report %+v", code, rep)
	}
	code, out, _ = run("--config", p, "check")
	if code != 1 || !strings.Contains(out, "node-config  FAIL") || !strings.Contains(out, "FAIL: 0 OK, 0 WARN, 1 FAIL, 0 SKIP (exit status 1)") {
		t.Fatalf("code %d, output:\n%s", code, out)
	}
}

func TestEnv(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("backend.kind = \"runc\"\nstate_dir = \"/run/x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("--config", p, "--containerd-config", filepath.Join(dir, "containerd.toml"), "env")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	for _, w := range []string{"cci-shim ", "COMPONENT", "containerd daemon", "backend shim (runc)", "runsc",
		"node config: " + p + " (explicit)", `state_dir = '/run/x'`, "runc_root = '/run/x/runc'", "rootfs_read_bps = 6000000"} {
		if !strings.Contains(out, w) {
			t.Errorf("env lacks %q:\n%s", w, out)
		}
	}
	code, out, _ = run("--config", p, "env", "--json")
	var rep envReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("code %d, %v: %s", code, err, out)
	}
	if rep.Config == nil || rep.Config.Backend.Kind != "runc" || rep.NodeConfig.Path != p || len(rep.Components) < 5 {
		t.Fatalf("report %+v", rep)
	}
	// A missing node config is reported, with the path, and fails.
	code, out, _ = run("--config", filepath.Join(dir, "none.toml"), "env")
	if code != 1 || !strings.Contains(out, "none.toml (named explicitly)") {
		t.Fatalf("code %d: %s", code, out)
	}
}
