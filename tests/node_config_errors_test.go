package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestNodeConfigErrorsReachTheUser: a broken node config or an unusable
// state_dir fails `ctr run` with the cause (key, path, file), not with
// "ttrpc: closed" and the cause in containerd's log; nothing is left behind.
func TestNodeConfigErrorsReachTheUser(t *testing.T) {
	dir := t.TempDir()
	notADir := filepath.Join(dir, "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	badTOML := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(badTOML, []byte("backend.kind = \"runc\"\n[throttle]\nstdio_bps = \"1MB\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(dir, "state.toml")
	for _, tc := range []struct {
		name   string
		config string // CCI_SHIM_CONFIG
		write  string // written to config with {{Dir}} expanded, when set
		want   []string
	}{
		{"missing file", filepath.Join(dir, "none.toml"), "",
			[]string{"node config " + filepath.Join(dir, "none.toml") + " (from $CCI_SHIM_CONFIG)", "no such file or directory", "install packaging/cci-shim/config.toml"}},
		{"bad TOML", badTOML, "", []string{"node config " + badTOML + ":3:13: throttle.stdio_bps: a TOML string where an integer is expected"}},
		{"state_dir not a directory", stateFile, `backend.kind = "runc"
state_dir = "` + notADir + `/cci"
policy.volume_dir = "{{Dir}}/volumes"
logs.file_dir = "{{Dir}}/podlogs"
gpu.state_dir = "{{Dir}}/gpu"
`, []string{"state_dir " + notADir + "/cci (node config " + stateFile + "): cannot create it: ", "not a directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := e2eenv.Start(t, e2eenv.Options{ExtraEnv: []string{e2eenv.NodeConfigEnv + "=" + tc.config}})
			if tc.write != "" {
				if err := os.WriteFile(tc.config, []byte(strings.ReplaceAll(tc.write, "{{Dir}}", env.Dir)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, stderr, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "cfg-err", "true")
			if err == nil {
				t.Fatal("ctr run succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("ctr's error lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "ttrpc: closed") {
				t.Errorf("the cause did not reach ctr:\n%s", stderr)
			}
			env.Ctr("container", "rm", "cfg-err")
			assertNoLeaks(t, env)
		})
	}
}
