package checks

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/config"
)

// fakeRunsc prints version for --version; `do` behaves as doScript says.
func fakeRunsc(t *testing.T, version, doScript string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runsc")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'runsc version " + version + "'; exit 0; fi\n" +
		"case \" $* \" in *\" list \"*) exit 0;; esac\n" + doScript + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func gvisorCfg(t *testing.T, runsc, extra string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	if err := config.Parse([]byte("backend.kind = \"gvisor\"\nbackend.gvisor.runsc = \""+runsc+"\"\n"+extra), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestGVisorChecks(t *testing.T) {
	for _, tc := range []struct {
		name       string
		version    string
		do         string // the fake's behaviour for `runsc ... do true`
		extra      string
		namespaced bool
		want       map[string]Status
		detail     map[string]string
	}{
		{name: "new runsc, systrap", version: "release-20260817.0", do: "exit 0", extra: "backend.gvisor.platform = \"systrap\"\n", namespaced: true,
			want: map[string]Status{"gvisor-runsc": OK, "gvisor-platform": OK, "gvisor-network": OK, "gvisor-nvproxy": OK, "gvisor-state-exec": OK}},
		{name: "Debian runsc on Linux 6.6+", version: "0.0~20221219.0", do: "exit 0", namespaced: true,
			want:   map[string]Status{"gvisor-network": Fail},
			detail: map[string]string{"gvisor-network": "fixed in runsc 20240731"}},
		{name: "Debian runsc on an older kernel", version: "0.0~20221219.0", do: "exit 0",
			want: map[string]Status{"gvisor-network": OK}},
		{name: "loopback only", version: "0.0~20221219.0", do: "exit 0", extra: "backend.gvisor.network = \"none\"\n", namespaced: true,
			want: map[string]Status{"gvisor-network": Warn}},
		{name: "platform hangs", version: "release-20260817.0", do: "sleep 30", extra: "backend.gvisor.platform = \"kvm\"\n",
			want:   map[string]Status{"gvisor-platform": Fail},
			detail: map[string]string{"gvisor-platform": "did not finish"}},
		{name: "platform fails", version: "release-20260817.0", do: "echo 'no such device' >&2; exit 128",
			want:   map[string]Status{"gvisor-platform": Fail},
			detail: map[string]string{"gvisor-platform": "no such device"}},
		{name: "systrap on an old runsc", version: "0.0~20221219.0", do: "exit 0", extra: "backend.gvisor.platform = \"systrap\"\n",
			want: map[string]Status{"gvisor-platform": Fail}},
		{name: "nvproxy on an old runsc", version: "0.0~20221219.0", do: "exit 0", extra: "backend.gvisor.nvproxy = true\n",
			want: map[string]Status{"gvisor-nvproxy": Fail}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gvisorCfg(t, fakeRunsc(t, tc.version, tc.do), tc.extra)
			rs := GVisor{Cfg: cfg, Timeout: time.Second, NetCoreNamespaced: func() bool { return tc.namespaced }}.Results()
			for name, want := range tc.want {
				if got := result(rs, name); got.Status != want || !strings.Contains(got.Detail, tc.detail[name]) {
					t.Errorf("%s = %+v, want %s with %q", name, got, want, tc.detail[name])
				}
			}
		})
	}
}

func TestGVisorCheckMissingRunsc(t *testing.T) {
	cfg := gvisorCfg(t, "runsc-not-installed", "")
	rs := GVisor{Cfg: cfg}.Results()
	if len(rs) != 1 || rs[0].Status != Fail || !strings.Contains(rs[0].Detail, "runsc-not-installed") {
		t.Errorf("results %+v, want one failure naming runsc", rs)
	}
}

// TestGVisorCheckRealRunsc runs the platform check with the host's runsc,
// where there is one and the test runs as root.
func TestGVisorCheckRealRunsc(t *testing.T) {
	runsc, err := exec.LookPath("runsc")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs runsc and root")
	}
	rs := GVisor{Cfg: gvisorCfg(t, runsc, "")}.Results()
	for _, r := range rs {
		t.Logf("%-18s %-4s %s", r.Name, r.Status, r.Detail)
	}
	if got := result(rs, "gvisor-platform"); got.Status != OK {
		t.Errorf("ptrace platform with %s: %+v", runsc, got)
	}
}
