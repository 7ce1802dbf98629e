package checks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/config"
)

// fakeHost is a whole machine: KVM, devices, dmsetup and programs.
type fakeHost struct {
	kvmErr     error
	kvmVersion int
	devices    map[string]bool   // openable devices, by path under the root
	pools      map[string]string // dmsetup status output by pool
	bins       map[string]string // program name -> path
	outputs    map[string]string // "path arg arg" -> output
}

func (h fakeHost) KVM(path string) (int, error) {
	if h.kvmErr != nil {
		return 0, h.kvmErr
	}
	return h.kvmVersion, nil
}

func (h fakeHost) OpenDevice(path string) error {
	if h.devices[filepath.Base(path)] {
		return nil
	}
	return &os.PathError{Op: "open", Path: path, Err: os.ErrNotExist}
}

func (h fakeHost) ThinPoolStatus(name string) (string, error) {
	if s, ok := h.pools[name]; ok {
		return s, nil
	}
	return "Device does not exist.\nCommand failed.", errors.New("exit status 1")
}

func (h fakeHost) LookPath(file string) (string, error) {
	if p, ok := h.bins[filepath.Base(file)]; ok {
		return p, nil
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

func (h fakeHost) Output(name string, args ...string) (string, error) {
	key := strings.Join(append([]string{name}, args...), " ")
	if out, ok := h.outputs[key]; ok {
		return out, nil
	}
	return "", fmt.Errorf("fake host: no output for %q", key)
}

// fixture builds a host tree with the given files.
func fixture(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
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
	return Result{Name: name, Status: "(absent)"}
}

const goodKata = `# Kata for cci; enable_annotations lists default_vcpus in a comment only below
[hypervisor.clh]
path = "/opt/kata/bin/cloud-hypervisor"
kernel = "/opt/kata/share/vmlinux"
image = "/opt/kata/share/kata.img"
enable_annotations = ["default_vcpus", "default_memory"]
disk_rate_limiter_bw_max_rate = 96000000
disk_rate_limiter_ops_max_rate = 2000
[runtime]
sandbox_cgroup_only = true
`

const containerdDump = `version = 3
root = '/var/lib/containerd'
state = '/run/containerd'
disabled_plugins = []
[grpc]
  address = '/run/containerd/containerd.sock'
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.runtime']
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes]
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.cci]
          runtime_type = 'io.containerd.cci.v2'
          snapshotter = 'devmapper'
          pod_annotations = ['*.cci.io/*', 'cci.io/*']
          [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.cci.options]
            ConfigPath = '/etc/cci-shim/config.toml'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
          runtime_type = 'io.containerd.runc.v2'
  [plugins.'io.containerd.snapshotter.v1.devmapper']
    pool_name = 'cci-thinpool'
    root_path = '/var/lib/containerd/devmapper'
    base_image_size = '20GB'
`

const poolOK = "0 41943040 thin-pool 1 457/4161600 100/327680 - rw no_discard_passdown queue_if_no_space - 1024"

// node is a production Kata node in which every check passes; cases
// change one thing.
type node struct {
	files map[string]string
	host  fakeHost
	cfg   func(root string) config.Config
}

func productionNode() node {
	return node{
		files: map[string]string{
			"proc/cpuinfo":                     "processor\t: 0\nflags\t\t: fpu vme sse vmx ept\n",
			"dev/mapper/control":               "",
			"etc/kata/cci.toml":                goodKata,
			"opt/kata/bin/cloud-hypervisor":    "#!/bin/sh\n",
			"opt/kata/share/vmlinux":           "",
			"opt/kata/share/kata.img":          "",
			"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
			"etc/containerd/config.toml":       "version = 3\n",
		},
		host: fakeHost{
			kvmVersion: 12,
			devices:    map[string]bool{"vhost-vsock": true},
			pools:      map[string]string{"cci-thinpool": poolOK},
			bins: map[string]string{"containerd-shim-kata-v2": "/usr/bin/containerd-shim-kata-v2", "containerd": "/usr/bin/containerd",
				"containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2", "runc": "/usr/sbin/runc"},
			outputs: map[string]string{
				"/usr/bin/containerd --config /etc/containerd/config.toml config dump": containerdDump,
				"/usr/sbin/runc --version": "runc version 1.1.5\ncommit: v1.1.5",
			},
		},
		cfg: func(root string) config.Config {
			c := config.Default()
			c.StateDir = "/run/cci-shim"
			c.Backend = config.Backend{Kind: config.BackendKata, Binary: "containerd-shim-kata-v2", ConfigPath: "/etc/kata/cci.toml"}
			return c
		},
	}
}

func (n node) run(t *testing.T) []Result {
	t.Helper()
	root := fixture(t, n.files)
	return Runner{Root: root, Cfg: n.cfg(root), Source: config.Source{Path: "/etc/cci-shim/config.toml", From: "default"}, Host: n.host}.Run()
}

func TestProductionNode(t *testing.T) {
	rs := productionNode().run(t)
	for _, r := range rs {
		if r.Status != OK && !(r.Name == "gpus" && r.Status == Skip) {
			t.Errorf("%s = %s: %s (fix: %s)", r.Name, r.Status, r.Detail, r.Fix)
		}
	}
	if len(rs) != 16 || ExitCode(rs) != 0 {
		t.Errorf("%d results, exit code %d", len(rs), ExitCode(rs))
	}
	if d := result(rs, "thin-pool").Detail; !strings.Contains(d, "data 100/327680 blocks (0%)") {
		t.Errorf("thin-pool detail %q", d)
	}
}

func TestChecksFail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(n *node)
		check  string
		want   Status
		detail string // substring of Detail
		fix    string // substring of Fix
	}{
		{"KVM_CREATE_VM fails", func(n *node) { n.host.kvmErr = errors.New("KVM_CREATE_VM: operation not permitted") },
			"kvm", Fail, "KVM_CREATE_VM: operation not permitted", "virtualisation"},
		{"old KVM API", func(n *node) { n.host.kvmVersion = 11 }, "kvm", Fail, "KVM API 11", ""},
		{"no vhost-vsock", func(n *node) { delete(n.host.devices, "vhost-vsock") }, "vhost-vsock", Fail, "/dev/vhost-vsock", "modprobe vhost_vsock"},
		{"no CPU flag", func(n *node) { n.files["proc/cpuinfo"] = "flags\t\t: fpu sse\n" }, "cpu-virt", Warn, "no vmx or svm", ""},
		{"backend missing", func(n *node) { delete(n.host.bins, "containerd-shim-kata-v2") }, "backend", Fail, `needs "containerd-shim-kata-v2"`, "backend.binary"},
		{"kata config missing", func(n *node) { delete(n.files, "etc/kata/cci.toml") }, "kata-config", Fail, "backend.config_path /etc/kata/cci.toml", "snippet"},
		{"kata config not TOML", func(n *node) { n.files["etc/kata/cci.toml"] = "[hypervisor.clh]\npath = \n" }, "kata-config", Fail, "/etc/kata/cci.toml:2:8", ""},
		// The case: an empty list, the keys only in a comment.
		{"enable_annotations empty", func(n *node) {
			n.files["etc/kata/cci.toml"] = strings.Replace(goodKata, `enable_annotations = ["default_vcpus", "default_memory"]`, "enable_annotations = [] # default_vcpus default_memory", 1)
		}, "kata-annotations", Fail, "does not allow default_vcpus, default_memory", `"default_vcpus", "default_memory"`},
		{"enable_annotations missing", func(n *node) {
			n.files["etc/kata/cci.toml"] = strings.Replace(goodKata, `enable_annotations = ["default_vcpus", "default_memory"]`, "", 1)
		}, "kata-annotations", Fail, "enable_annotations is not set", ""},
		{"enable_annotations one of two", func(n *node) {
			n.files["etc/kata/cci.toml"] = strings.Replace(goodKata, `"default_vcpus", "default_memory"`, `"default_vcpus", "enable_iommu"`, 1)
		}, "kata-annotations", Fail, "does not allow default_memory", ""},
		{"sandbox_cgroup_only false", func(n *node) {
			n.files["etc/kata/cci.toml"] = strings.Replace(goodKata, "sandbox_cgroup_only = true", "sandbox_cgroup_only = false", 1)
		}, "kata-config", Fail, "sandbox_cgroup_only is false", "sandbox_cgroup_only = true"},
		{"disk limiter off", func(n *node) {
			n.files["etc/kata/cci.toml"] = strings.Replace(goodKata, "disk_rate_limiter_bw_max_rate = 96000000\n", "", 1)
		}, "kata-disk-limiter", Fail, "disk_rate_limiter_bw_max_rate = unset, want 96000000", ""},
		{"qemu", func(n *node) {
			n.files["etc/kata/cci.toml"] = strings.Replace(goodKata, "hypervisor.clh", "hypervisor.qemu", 1)
		},
			"kata-disk-limiter", Warn, "does not honour", ""},
		{"hypervisor binary missing", func(n *node) { delete(n.files, "opt/kata/bin/cloud-hypervisor") }, "hypervisor", Fail, "path /opt/kata/bin/cloud-hypervisor", ""},
		{"no device-mapper", func(n *node) { delete(n.files, "dev/mapper/control") }, "thin-pool", Fail, "this host has no device-mapper", "blockfile"},
		{"pool missing", func(n *node) { delete(n.host.pools, "cci-thinpool") }, "thin-pool", Fail, "Command failed.", "thinpool.sh"},
		{"pool read-only", func(n *node) { n.host.pools["cci-thinpool"] = strings.Replace(poolOK, " rw ", " ro ", 1) }, "thin-pool", Fail, ", ro", ""},
		{"pool full", func(n *node) {
			n.host.pools["cci-thinpool"] = strings.Replace(poolOK, "100/327680", "320000/327680", 1)
		}, "thin-pool", Warn, "(98%)", "extend"},
		{"no cci runtime", func(n *node) {
			n.setDump(strings.ReplaceAll(containerdDump, "io.containerd.cci.v2", "io.containerd.kata.v2"))
		},
			"containerd-runtime", Fail, "registers no CRI runtime of type io.containerd.cci.v2", "conf.d"},
		{"annotations not passed", func(n *node) {
			n.setDump(strings.Replace(containerdDump, "['*.cci.io/*', 'cci.io/*']", "['cci.io/*']", 1))
		},
			"containerd-runtime", Fail, "do not pass coordinator.cci.io/hostpath-replacement", `"*.cci.io/*"`},
		{"shims read another node config", func(n *node) {
			n.setDump(strings.Replace(containerdDump, "/etc/cci-shim/config.toml", "/etc/other.toml", 1))
		},
			"containerd-runtime", Fail, "hands the shims node config /etc/other.toml", "--config /etc/other.toml"},
		{"containerd not installed", func(n *node) { delete(n.host.bins, "containerd") }, "containerd-runtime", Fail, "containerd is not in PATH", ""},
		// k3s: the case of every pod refused for a hostPath it does not have.
		{"k3s root", func(n *node) {
			n.setDump(strings.Replace(containerdDump, "root = '/var/lib/containerd'", "root = '/var/lib/rancher/k3s/agent/containerd'", 1))
		}, "containerd-roots", Fail, "containerd's root is /var/lib/rancher/k3s/agent/containerd but policy.containerd_root is /var/lib/containerd",
			`policy.containerd_root = "/var/lib/rancher/k3s/agent/containerd" in /etc/cci-shim/config.toml`},
		{"rootfs size differs", func(n *node) {
			orig := n.cfg
			n.cfg = func(root string) config.Config { c := orig(root); c.Rootfs.SizeBytes = 10 << 30; return c }
		}, "rootfs-size", Fail, "rootfs.size_bytes is 10737418240 (10GiB) but the devmapper base_image_size \"20GB\" gives 21474836480", ""},
		{"overlayfs", func(n *node) { n.setDump(strings.Replace(containerdDump, "snapshotter = 'devmapper'", "", 1)) }, "rootfs-size", Warn, "overlayfs snapshotter", ""},
		{"no io controller", func(n *node) { n.files["sys/fs/cgroup/cgroup.controllers"] = "cpu memory pids\n" }, "cgroups", Fail, "without the io controller", ""},
		{"cgroup v1", func(n *node) {
			delete(n.files, "sys/fs/cgroup/cgroup.controllers")
			n.files["sys/fs/cgroup/blkio/blkio.throttle.write_bps_device"] = ""
		}, "cgroups", Warn, "cgroup v1 blkio", "cgroup v2"},
		{"state dir is a file", func(n *node) { n.files["run/cci-shim"] = "not a dir" }, "state-dirs", Fail, "state_dir /run/cci-shim: /run/cci-shim is not a directory", "state_dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := productionNode()
			n.host.pools = map[string]string{"cci-thinpool": poolOK}
			n.host.devices = map[string]bool{"vhost-vsock": true}
			n.host.bins = copyMap(n.host.bins)
			n.host.outputs = copyMap(n.host.outputs)
			tc.change(&n)
			rs := n.run(t)
			got := result(rs, tc.check)
			if got.Status != tc.want || !strings.Contains(got.Detail, tc.detail) || !strings.Contains(got.Fix, tc.fix) {
				t.Errorf("%s = %s\n detail %q (want %q)\n fix %q (want %q)", tc.check, got.Status, got.Detail, tc.detail, got.Fix, tc.fix)
			}
			want := map[Status]int{Fail: 1, Warn: 3}[tc.want]
			if code := ExitCode(rs); code != want {
				t.Errorf("exit code %d, want %d", code, want)
			}
		})
	}
}

func (n *node) setDump(s string) {
	n.host.outputs["/usr/bin/containerd --config /etc/containerd/config.toml config dump"] = s
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestRuncNode(t *testing.T) {
	n := productionNode()
	n.host.kvmErr = errors.New("no such file or directory")
	delete(n.files, "dev/mapper/control")
	n.setDump(strings.Replace(containerdDump, "snapshotter = 'devmapper'", "snapshotter = 'blockfile'", 1) +
		"  [plugins.'io.containerd.snapshotter.v1.blockfile']\n    scratch_file = '/var/lib/scratch.ext4'\n")
	n.files["var/lib/scratch.ext4"] = ""
	n.cfg = func(string) config.Config {
		c := config.Default()
		if err := config.Parse([]byte("backend.kind = \"runc\"\n"), &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	root := fixture(t, n.files)
	if err := os.Truncate(filepath.Join(root, "var/lib/scratch.ext4"), 20<<30); err != nil {
		t.Fatal(err)
	}
	rs := Runner{Root: root, Cfg: n.cfg(root), Source: config.Source{Path: "/c.toml"}, Host: n.host}.Run()
	want := map[string]Status{"kvm": Skip, "vhost-vsock": Skip, "cpu-virt": Skip, "backend": Warn, "runc": OK,
		"thin-pool": Skip, "rootfs-size": OK, "containerd-runtime": Fail /* ConfigPath differs */}
	for name, st := range want {
		if got := result(rs, name); got.Status != st {
			t.Errorf("%s = %s (%s), want %s", name, got.Status, got.Detail, st)
		}
	}
	if d := result(rs, "kvm").Detail; !strings.Contains(d, "not needed by the runc backend") {
		t.Errorf("kvm detail %q", d)
	}
	if d := result(rs, "runc").Detail; d != "/usr/sbin/runc runc version 1.1.5" {
		t.Errorf("runc detail %q", d)
	}
}

func TestConfigLoadError(t *testing.T) {
	rs := Runner{LoadErr: errors.New("node config /x.toml:3:1: unknown setting foo")}.Run()
	if len(rs) != 1 || rs[0].Name != "node-config" || rs[0].Status != Fail || ExitCode(rs) != 1 {
		t.Fatalf("results %+v", rs)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		statuses []Status
		want     int
	}{{[]Status{OK, Skip}, 0}, {[]Status{OK, Warn}, 3}, {[]Status{Warn, Fail, OK}, 1}, {nil, 0}} {
		var rs []Result
		for _, s := range tc.statuses {
			rs = append(rs, Result{Status: s})
		}
		if got := ExitCode(rs); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.statuses, got, tc.want)
		}
	}
}

func TestParseThinPoolStatus(t *testing.T) {
	st, err := ParseThinPoolStatus(poolOK)
	if err != nil || st.Mode != "rw" || st.Metadata != (Usage{457, 4161600}) || st.Data != (Usage{100, 327680}) || st.NeedsCheck || st.Failed {
		t.Fatalf("%+v %v", st, err)
	}
	if st, err := ParseThinPoolStatus("0 10 thin-pool Fail"); err != nil || !st.Failed {
		t.Fatalf("Fail: %+v %v", st, err)
	}
	if st, _ := ParseThinPoolStatus("0 1 thin-pool 0 1/2 3/4 - rw discard_passdown queue_if_no_space needs_check 8"); !st.NeedsCheck {
		t.Error("needs_check not seen")
	}
	for _, bad := range []string{"", "0 10 linear 8:1 0", "0 1 thin-pool 0 x/2 3/4 - rw", "0 1 thin-pool 0 1/2"} {
		if _, err := ParseThinPoolStatus(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
