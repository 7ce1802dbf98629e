package backend

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/pelletier/go-toml/v2"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/sandbox/refusal"
)

// fakeRunsc is a runsc that prints its version, or else its arguments one a
// line, so that a test can see what the wrapper ran.
func fakeRunsc(t *testing.T, version string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "runsc")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'runsc version " + version + "'; echo 'spec: 1.0.2'; exit 0; fi\nfor a in \"$@\"; do echo \"$a\"; done\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeHelper is a cci-runsc that prints its arguments one a line.
func fakeHelper(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cci-runsc")
	script := "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func gvisorConfig(t *testing.T, toml string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	if err := config.Parse([]byte(`backend.kind = "gvisor"
backend.binary = "`+fakeBinary(t, "containerd-shim-x")+`"
backend.gvisor.helper = "`+fakeHelper(t)+`"
`+toml), &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newGVisorAdapter(t *testing.T, cfg config.Config) Adapter {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestGVisorMissingRunsc(t *testing.T) {
	cfg := gvisorConfig(t, `backend.gvisor.runsc = "runsc-not-installed"`)
	_, err := New(cfg)
	if !errors.Is(err, ErrBinaryNotFound) || !strings.Contains(err.Error(), `runsc "runsc-not-installed"`) {
		t.Fatalf("err = %v, want ErrBinaryNotFound naming runsc", err)
	}
}

func TestGVisorMissingHelper(t *testing.T) {
	cfg := gvisorConfig(t, "backend.gvisor.runsc = \""+fakeRunsc(t, "0.0~20221219.0")+"\"\n")
	cfg.Backend.GVisor.Helper = "cci-runsc-not-installed"
	_, err := New(cfg)
	if !errors.Is(err, ErrBinaryNotFound) || !strings.Contains(err.Error(), `"cci-runsc-not-installed"`) {
		t.Fatalf("err = %v, want ErrBinaryNotFound naming the helper", err)
	}
	cfg.Backend.GVisor.Shim = config.GVisorShimRunsc // gVisor's shim does not need it
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
}

func TestGVisorRuncShimWrapper(t *testing.T) {
	runsc := fakeRunsc(t, "0.0~20221219.0")
	cfg := gvisorConfig(t, "backend.gvisor.runsc = \""+runsc+"\"\nbackend.gvisor.platform = \"kvm\"\nbackend.gvisor.debug_log_dir = \"/var/log/runsc\"\n")
	a := newGVisorAdapter(t, cfg)
	if a.Kind() != config.BackendGVisor {
		t.Errorf("kind %q", a.Kind())
	}
	any, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	var o options.Options
	if err := typeurl.UnmarshalTo(any, &o); err != nil {
		t.Fatal(err)
	}
	if o.Root != filepath.Join(cfg.StateDir, "runsc") || filepath.Dir(o.BinaryName) != filepath.Join(cfg.StateDir, "gvisor") {
		t.Fatalf("runc options = %+v", &o)
	}
	// The runc shim runs the wrapper as runsc: cci-runsc gets runsc and the
	// node's flags, then what the runc shim passed.
	out, err := exec.Command(o.BinaryName, "--root", "/r", "--log", "/l.json", "create", "--bundle", "/b", "it's").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := runsc + "\n--platform=kvm\n--network=sandbox\n--overlay2=none\n--file-access-mounts=shared\n--debug\n--debug-log=/var/log/runsc/\n--\n--root\n/r\n--log\n/l.json\ncreate\n--bundle\n/b\nit's\n"
	if string(out) != want {
		t.Errorf("wrapper ran runsc with\n%s\nwant\n%s", out, want)
	}
	// Same config, same file; it is not rewritten.
	st, _ := os.Stat(o.BinaryName)
	again, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	var o2 options.Options
	typeurl.UnmarshalTo(again, &o2)
	st2, _ := os.Stat(o2.BinaryName)
	if o2.BinaryName != o.BinaryName || !os.SameFile(st, st2) {
		t.Errorf("second Options wrote %s, first %s", o2.BinaryName, o.BinaryName)
	}
	// Another config, another file: a wrapper in use never changes.
	cfg.Backend.GVisor.Platform = "ptrace"
	cfg.Backend.GVisor.DebugLogDir = ""
	other, _ := newGVisorAdapter(t, cfg).Options()
	var o3 options.Options
	typeurl.UnmarshalTo(other, &o3)
	if o3.BinaryName == o.BinaryName {
		t.Errorf("a different config reused wrapper %s", o3.BinaryName)
	}
}

func TestGVisorRunscShimConfig(t *testing.T) {
	runsc := fakeRunsc(t, "release-20250317.0")
	cfg := gvisorConfig(t, "backend.gvisor.shim = \"runsc\"\nbackend.gvisor.runsc = \""+runsc+"\"\nbackend.gvisor.nvproxy = true\n")
	a := newGVisorAdapter(t, cfg)
	any, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	var o runtimeoptions.Options
	if err := typeurl.UnmarshalTo(any, &o); err != nil {
		t.Fatal(err)
	}
	if o.TypeUrl != RunscOptionsType {
		t.Errorf("TypeUrl %q, want %q (gVisor's shim refuses anything else)", o.TypeUrl, RunscOptionsType)
	}
	data, err := os.ReadFile(o.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		BinaryName  string            `toml:"binary_name"`
		Root        string            `toml:"root"`
		RunscConfig map[string]string `toml:"runsc_config"`
	}
	if err := toml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%v:\n%s", err, data)
	}
	want := map[string]string{"platform": "ptrace", "network": "sandbox", "overlay2": "none", "file-access-mounts": "shared", "nvproxy": "true"}
	if doc.BinaryName != runsc || doc.Root != filepath.Join(cfg.StateDir, "runsc") || len(doc.RunscConfig) != len(want) {
		t.Fatalf("runsc.toml:\n%s", data)
	}
	for k, v := range want {
		if doc.RunscConfig[k] != v {
			t.Errorf("runsc_config.%s = %q, want %q", k, doc.RunscConfig[k], v)
		}
	}
}

func TestGVisorAdjustSpec(t *testing.T) {
	old := fakeRunsc(t, "0.0~20221219.0")
	newer := fakeRunsc(t, "release-20260817.0")
	gpu := []specs.LinuxDevice{{Path: "/dev/nvidiactl", Type: "c", Major: 195, Minor: 255}}
	for _, tc := range []struct {
		name     string
		runsc    string
		nvproxy  bool
		spec     specs.Spec
		wantErr  string
		wantKind error
	}{
		{name: "plain", runsc: old, spec: specs.Spec{Linux: &specs.Linux{}}},
		{name: "runsc annotation", runsc: old, spec: specs.Spec{Annotations: map[string]string{"dev.gvisor.spec.cgroup-parent": "/"}},
			wantErr: `annotations "dev.gvisor.spec.cgroup-parent" is not allowed (runsc settings come from the node config, never from a pod); allowed: no dev.gvisor.* annotation`},
		{name: "sysctl runsc ignores", runsc: old, spec: specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "1"}}},
			wantErr: `linux.sysctl "kernel.shmmax=1" is not allowed (the gvisor backend cannot apply it: gVisor's user-space kernel keeps its own value, and runsc ignores the pod's); allowed: on gvisor (runsc 20221219): net.ipv4.ip_unprivileged_port_start = 0; net.ipv4.ping_group_range = 0 2147483647 (every group)`},
		{name: "containerd's CRI defaults hold", runsc: old, spec: specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}}}},
		{name: "privileged ports cannot be kept", runsc: old, spec: specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.ipv4.ip_unprivileged_port_start": "1024"}}},
			wantErr: `linux.sysctl "net.ipv4.ip_unprivileged_port_start=1024" is not allowed`},
		{name: "ping for some groups only", runsc: old, spec: specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.ipv4.ping_group_range": "1 0"}}},
			wantErr: `linux.sysctl "net.ipv4.ping_group_range=1 0" is not allowed`},
		{name: "ipv6 sysctl on an old runsc", runsc: old, spec: specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.ipv6.conf.all.disable_ipv6": "1"}}},
			wantErr: `linux.sysctl "net.ipv6.conf.all.disable_ipv6=1" is not allowed`},
		{name: "ipv6 sysctl on a newer runsc", runsc: newer, spec: specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.ipv6.conf.all.disable_ipv6": "1"}}}},
		{name: "other sysctl on a newer runsc", runsc: newer, spec: specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"kernel.sem": "1 2 3 4"}}},
			wantErr: `allowed: on gvisor (runsc 20260817): net.ipv4.ip_unprivileged_port_start = 0; net.ipv4.ping_group_range = 0 2147483647 (every group); net.ipv6.conf.all.disable_ipv6 = 0 or 1`},
		{name: "gpu without nvproxy", runsc: old, spec: specs.Spec{Linux: &specs.Linux{Devices: gpu}},
			wantErr: `linux.devices "/dev/nvidiactl" is not allowed (GPUs on the gvisor backend go through gVisor's nvproxy, which this node does not enable (backend.gvisor.nvproxy))`, wantKind: errdefs.ErrFailedPrecondition},
		{name: "gpu with nvproxy", runsc: old, nvproxy: true, spec: specs.Spec{Linux: &specs.Linux{Devices: gpu}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gvisorConfig(t, "backend.gvisor.runsc = \""+tc.runsc+"\"\n")
			cfg.Backend.GVisor.NVProxy = tc.nvproxy
			err := newGVisorAdapter(t, cfg).AdjustSpec(&tc.spec, PodSize{MilliCPU: 1000, MemoryBytes: 2 << 30})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var pe *refusal.Error
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v\nwant a PolicyError containing %s", err, tc.wantErr)
			}
			kind := tc.wantKind
			if kind == nil {
				kind = errdefs.ErrInvalidArgument
			}
			if !errors.Is(err, kind) {
				t.Errorf("err %v is not %v", err, kind)
			}
		})
	}
}

func TestParseRunscVersion(t *testing.T) {
	for out, want := range map[string]int{
		"runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n":      20221219,
		"runsc version release-20250317.0\nspec: 1.1.0-rc.1\n": 20250317,
		"runsc version VERSION_MISSING\n":                      0,
		"":                                                     0,
	} {
		got, err := ParseRunscVersion(out)
		if got != want || (want == 0) != (err != nil) {
			t.Errorf("ParseRunscVersion(%q) = %d, %v; want %d", out, got, err, want)
		}
	}
}

func TestSyncMounts(t *testing.T) {
	in := []*types.Mount{{Type: "ext4", Source: "/dev/loop3", Options: []string{"rw", "sync"}}, {Type: "xfs", Source: "/dev/dm-4"}, {Type: "bind", Source: "/x", Options: []string{"rbind"}}}
	out := SyncMounts(in)
	for i, want := range [][]string{{"rw", "sync", "lazytime", "nobarrier"}, {"sync", "lazytime"}, {"rbind"}} {
		if strings.Join(out[i].Options, ",") != strings.Join(want, ",") || out[i].Source != in[i].Source || out[i].Type != in[i].Type {
			t.Errorf("mount %d: %+v, want options %v", i, out[i], want)
		}
	}
	if strings.Join(in[0].Options, ",") != "rw,sync" {
		t.Errorf("SyncMounts changed its input: %v", in[0].Options)
	}
}

func TestTraits(t *testing.T) {
	cfg := gvisorConfig(t, "backend.gvisor.runsc = \""+fakeRunsc(t, "0.0~20221219.0")+"\"\n")
	tr := newGVisorAdapter(t, cfg).Traits()
	if tr.Isolation != IsolationUserKernel || !tr.Isolation.IsolatesKernel() || tr.RootfsThrottle != ThrottleSandbox ||
		tr.GPU != GPUNVProxy || tr.PodMetrics != MetricsInSandbox || !tr.RootfsSyncWrites {
		t.Errorf("gvisor traits %+v", tr)
	}
}
