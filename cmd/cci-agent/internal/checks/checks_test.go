package checks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/config"
)

// fixture builds a host tree with the given files.
func fixture(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func result(rs []Result, name string) Result {
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	return Result{}
}

func TestChecks(t *testing.T) {
	bin := t.TempDir()
	shimPath := filepath.Join(bin, "containerd-shim-kata-v2")
	if err := os.WriteFile(shimPath, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	kata := func(root string) config.Config {
		c := config.Default()
		c.StateDir = filepath.Join(root, "run")
		c.Backend = config.Backend{Kind: config.BackendKata, Binary: shimPath, ConfigPath: "/etc/kata/c.toml"}
		return c
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  map[string]Status
	}{
		{
			name: "production node",
			files: map[string]string{
				"dev/kvm": "", "dev/mapper/control": "",
				"etc/kata/c.toml": `enable_annotations = ["default_vcpus", "default_memory"]`,
				"sys/fs/cgroup/blkio/blkio.throttle.write_bps_device": "",
			},
			want: map[string]Status{"kvm": OK, "backend": OK, "kata-config": OK, "thin-pool": OK, "state-dir": OK, "gpus": OK},
		},
		{
			name:  "no kvm, no thin pool, kata refusing size annotations, no blkio",
			files: map[string]string{"etc/kata/c.toml": `enable_annotations = []`},
			want:  map[string]Status{"kvm": Fail, "kata-config": Fail, "thin-pool": Fail, "cgroups": Fail},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fixture(t, tc.files)
			rs := Runner{Root: root, Cfg: kata(root)}.Run()
			for name, want := range tc.want {
				if got := result(rs, name); got.Status != want {
					t.Errorf("%s = %s (%s), want %s", name, got.Status, got.Detail, want)
				}
			}
			if Failed(rs) != strings.Contains(tc.name, "no kvm") {
				t.Errorf("Failed = %v for %s", Failed(rs), tc.name)
			}
		})
	}
}
