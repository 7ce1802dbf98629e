package config

import (
	"os"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/iothrottle"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		toml    string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "empty file keeps defaults", check: func(t *testing.T, c Config) {
			if c.Backend.Kind != BackendRunc || c.Backend.Binary != "containerd-shim-runc-v2" {
				t.Errorf("backend = %+v", c.Backend)
			}
			if c.Rootfs.SizeBytes != 20<<30 {
				t.Errorf("rootfs size = %d, want 20 GiB", c.Rootfs.SizeBytes)
			}
			if c.Backend.RuncRoot != "/run/cci-shim/runc" {
				t.Errorf("runc root = %q", c.Backend.RuncRoot)
			}
		}},
		{name: "kata defaults its binary", toml: "[backend]\nkind = \"kata\"\nconfig_path = \"/etc/kata/c.toml\"\n",
			check: func(t *testing.T, c Config) {
				if c.Backend.Binary != "containerd-shim-kata-v2" || c.Backend.ConfigPath != "/etc/kata/c.toml" {
					t.Errorf("backend = %+v", c.Backend)
				}
			}},
		{name: "unknown backend", toml: "[backend]\nkind = \"firecracker\"\n", wantErr: `backend.kind "firecracker": allowed values are "runc", "gvisor" and "kata"`},
		{name: "gvisor defaults", toml: "[backend]\nkind = \"gvisor\"\n", check: func(t *testing.T, c Config) {
			want := GVisor{Shim: "runc", Runsc: "runsc", Helper: "cci-runsc", Root: "/run/cci-shim/runsc", Platform: "ptrace", Network: "sandbox"}
			if c.Backend.Binary != "containerd-shim-runc-v2" || c.Backend.GVisor != want || c.Backend.RuncRoot != "" {
				t.Errorf("backend = %+v", c.Backend)
			}
		}},
		{name: "gvisor's own shim", toml: "[backend]\nkind = \"gvisor\"\n[backend.gvisor]\nshim = \"runsc\"\nplatform = \"kvm\"\nnetwork = \"none\"\nroot = \"/run/r\"\nnvproxy = true\n",
			check: func(t *testing.T, c Config) {
				want := GVisor{Shim: "runsc", Runsc: "runsc", Helper: "cci-runsc", Root: "/run/r", Platform: "kvm", Network: "none", NVProxy: true}
				if c.Backend.Binary != "containerd-shim-runsc-v1" || c.Backend.GVisor != want {
					t.Errorf("backend = %+v", c.Backend)
				}
			}},
		{name: "gvisor host network", toml: "[backend]\nkind = \"gvisor\"\ngvisor.network = \"host\"\n", wantErr: `backend.gvisor.network "host": allowed values are "sandbox" and "none"`},
		{name: "gvisor platform", toml: "[backend]\nkind = \"gvisor\"\ngvisor.platform = \"qemu\"\n", wantErr: `backend.gvisor.platform "qemu": allowed values are "ptrace", "kvm" and "systrap"`},
		{name: "gvisor shim", toml: "[backend]\nkind = \"gvisor\"\ngvisor.shim = \"kata\"\n", wantErr: `backend.gvisor.shim "kata": allowed values are "runc" and "runsc"`},
		{name: "gvisor relative root", toml: "[backend]\nkind = \"gvisor\"\ngvisor.root = \"runsc\"\n", wantErr: `backend.gvisor.root "runsc": must be an absolute path`},
		{name: "gvisor relative debug dir", toml: "[backend]\nkind = \"gvisor\"\ngvisor.debug_log_dir = \"logs\"\n", wantErr: `backend.gvisor.debug_log_dir "logs": must be an absolute path`},
		{name: "runc option on gvisor", toml: "[backend]\nkind = \"gvisor\"\nrunc_root = \"/x\"\n", wantErr: "are not for gvisor"},
		{name: "gvisor option on runc", toml: "[backend.gvisor]\nplatform = \"kvm\"\n", wantErr: `backend.gvisor is for gvisor; backend.kind is "runc"`},
		{name: "typo is an error", toml: "stat_dir = \"/x\"\n", wantErr: "unknown setting"},
		{name: "relative state dir", toml: "state_dir = \"run\"\n", wantErr: `state_dir "run": must be an absolute path`},
		{name: "kata option on runc", toml: "[backend]\nconfig_path = \"/x\"\n", wantErr: "backend.config_path is for kata"},
		{name: "bad size", toml: "[rootfs]\nsize_bytes = -1\n", wantErr: "rootfs.size_bytes -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte(tc.toml), &c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// The Kata snippet the packaging ships carries the disk limiter the default
// node limits render to.
func TestPackagedKataSnippet(t *testing.T) {
	data, err := os.ReadFile("../packaging/kata/configuration-cci.toml.snippet")
	if err != nil {
		t.Fatal(err)
	}
	want := iothrottle.KataDiskRateLimiterConfig(Default().Throttle.NodeLimits().Rootfs)
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(string(data), line) {
			t.Errorf("packaging/kata snippet lacks %q", line)
		}
	}
}

// R25's development option is off unless a node says so, by its long name.
func TestInsecureHostRootCapabilitiesOption(t *testing.T) {
	if Default().Policy.InsecureAllowHostRootCapabilities {
		t.Fatal("on by default")
	}
	c := Default()
	if err := Parse([]byte("[policy]\ninsecure_allow_host_root_capabilities = true\n"), &c); err != nil || !c.Policy.InsecureAllowHostRootCapabilities {
		t.Fatalf("parse: %v %+v", err, c.Policy)
	}
}
