package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// The attack suite of issue 9, through CRI: what a hostile pod spec can make
// kubelet (or any CRI client) ask containerd for. Each attack is refused at
// RunPodSandbox or StartContainer with the tenant-facing message (field,
// value, what is allowed), or shown to have no effect, and leaves nothing
// behind. The containerd-API half is attack_api_test.go; bind sources
// swapped for symlinks attack_bindswap_test.go; logs attack_logs_test.go;
// the legitimate variants attack_legit_test.go.

// Texts of the documented refusals (sandbox/).
const (
	devicesText   = "allowed: the OCI default devices /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty, /dev/console, /dev/ptmx and the pod's ptys"
	hostRootText  = "containers share the host kernel, where these capabilities are host root); allowed: capabilities other than CAP_SYS_ADMIN, CAP_SYS_MODULE"
	podUIDText    = "allowed: a pod UID: a lowercase UUID, or 32 hex digits for a static pod"
	mountsAllowed = "allowed: proc at /proc, sysfs ro at /sys, cgroup ro at /sys/fs/cgroup"
)

// TestAttackCRIRefusals: items 1, 3, 6, 7, 12 and 13 of issue 9 through CRI,
// each refused with its documented message and leaving nothing behind.
func TestAttackCRIRefusals(t *testing.T) {
	env := startEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	loop, major, minor := envLoopDevice(t, env)

	sandboxCases := []struct {
		item, name string
		setup      func(*runtimeapi.PodSandboxConfig)
		want       []string
	}{
		{"3", "pod UID with ..", func(c *runtimeapi.PodSandboxConfig) {
			c.Metadata.Uid = "../../../../tmp"
		}, []string{`annotation io.kubernetes.cri.sandbox-uid "../../../../tmp" is not allowed; ` + podUIDText}},
		{"3", "pod UID naming a directory", func(c *runtimeapi.PodSandboxConfig) {
			c.Metadata.Uid = "x/../../" + podUID("victim")
		}, []string{`annotation io.kubernetes.cri.sandbox-uid "x/../../` + podUID("victim") + `" is not allowed; ` + podUIDText}},
		{"6", "annotation raises a 256Mi pod to 16Gi", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 30000, CpuShares: 307, MemoryLimitInBytes: 256 << 20}
			c.Annotations = map[string]string{"resources.cci.io/containers": `[{"name":"app","limits":{"cpu":"300m","memory":"16Gi"}}]`}
		}, []string{`annotation resources.cci.io/containers "pod memory limit 16 GiB" is not allowed (the pod memory limit is 256 MiB as CRI set it)`}},
		{"6", "annotation raises the pod's CPU", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30}
			c.Annotations = map[string]string{"resources.cci.io/containers": `[{"name":"app","limits":{"cpu":"16","memory":"1Gi"}}]`}
		}, []string{`annotation resources.cci.io/containers "pod CPU limit 16`, "as CRI set it"}},
	}
	for _, tc := range sandboxCases {
		t.Run(tc.item+": "+tc.name, func(t *testing.T) {
			cfg := podConfig(env, "attack-"+tc.item, nil)
			tc.setup(cfg)
			p, err := runPod(ctx, env, cfg)
			if err == nil {
				p.remove(ctx, t)
			}
			wantRefused(t, "RunPodSandbox", err, tc.want...)
			assertClean(t, env)
		})
	}

	hostDir := filepath.Join(env.Dir, "host-data")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	containerCases := []struct {
		item, name  string
		annotations map[string]string
		setup       func(k *kubeletPod, c *runtimeapi.ContainerConfig)
		want        []string
	}{
		{"1", "CRI device: the loop device holding every rootfs", nil, func(_ *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/xvda", HostPath: loop, Permissions: "rwm"}}
		}, []string{fmt.Sprintf(`linux.devices "/dev/xvda b %d:%d" is not allowed; %s`, major, minor, devicesText)}},
		{"1", "CRI device disguised as /dev/null", nil, func(_ *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Devices = []*runtimeapi.Device{{ContainerPath: "/dev/null", HostPath: loop, Permissions: "r"}}
		}, []string{fmt.Sprintf(`linux.devices "/dev/null b %d:%d" is not allowed`, major, minor)}},
		{"3", "hostPath laid out like this pod's kubelet dir under another root", nil, func(k *kubeletPod, c *runtimeapi.ContainerConfig) {
			// The first mount fixes the pod's kubelet root; a second
			// "kubelet root" made of a host dir is refused.
			forged := filepath.Join(env.Dir, "forged", "pods", filepath.Base(k.dir), "volumes", "kubernetes.io~empty-dir", "data")
			if err := os.MkdirAll(forged, 0o755); err != nil {
				t.Fatal(err)
			}
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/data", HostPath: k.emptyDir("data")},
				{ContainerPath: "/forged", HostPath: forged},
			}
		}, []string{`mount source "` + filepath.Join(env.Dir, "forged", "pods"), "differs from " + filepath.Join(env.Dir, "kubelet") + ", seen earlier for this pod",
			"allowed: the pod's own volumes under one kubelet root and one containerd root"}},
		{"7", "bind onto /proc/sys", nil, func(k *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/proc/sys", HostPath: k.emptyDir("data")}}
		}, []string{"mount /proc/sys", "(a bind onto /, /dev, /proc or /sys); " + mountsAllowed}},
		{"7", "host /proc as a volume", nil, func(_ *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/hostproc", HostPath: "/proc"}}
		}, []string{`hostPath volume "/proc" is not allowed (mounted at /hostproc)`, hostPathText}},
		{"7", "host cgroupfs as a volume", nil, func(_ *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/cg", HostPath: "/sys/fs/cgroup"}}
		}, []string{`hostPath volume "/sys/fs/cgroup" is not allowed (mounted at /cg)`}},
		{"12", "replacement volume larger than the node's disk", map[string]string{
			"coordinator.cci.io/hostpath-replacement": `[{"name":"*","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"100Ti"}}]`,
		}, func(_ *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: hostDir}}
		}, []string{`sizeLimit "102400 GiB" is not allowed (the node has `, "free for pod volumes); allowed: a sizeLimit the node's disk can hold"}},
		{"13", "CAP_SYS_ADMIN on runc", nil, func(_ *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}}
		}, []string{`process.capabilities "CAP_SYS_ADMIN" is not allowed (on this node's backend`, hostRootText}},
		{"13", "ptrace and open_by_handle_at on runc", nil, func(_ *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"SYS_PTRACE", "DAC_READ_SEARCH"}}}
		}, []string{`process.capabilities "`, "CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", hostRootText}},
		{"13", "every capability (ALL) on runc", nil, func(_ *kubeletPod, c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}}
		}, []string{`process.capabilities "CAP_`, "CAP_SYS_MODULE", hostRootText}},
	}
	for _, tc := range containerCases {
		t.Run(tc.item+": "+tc.name, func(t *testing.T) {
			cfg := podConfig(env, "attack-c"+tc.item, tc.annotations)
			k := newKubeletPod(t, env, cfg.Metadata.Uid)
			p := runPodT(ctx, t, env, cfg)
			cc := sleeper(env, "app")
			tc.setup(k, cc)
			id, err := p.start(ctx, cc)
			wantRefused(t, "StartContainer", err, tc.want...)
			if id != "" {
				st, serr := p.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
				if serr == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Errorf("refused container is running")
				}
			}
			p.remove(ctx, t)
			k.unmount()
			assertClean(t, env)
		})
	}
}

// TestAttackCRINoEffect: items 2, 5, 6, 7 and 8 of issue 9 through CRI,
// where the shim rewrites what the tenant asked for: the attack runs and
// has no effect.
func TestAttackCRINoEffect(t *testing.T) {
	env := startEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("2: masked and read-only paths replaced by nonexistent ones", func(t *testing.T) {
		p := runPodT(ctx, t, env, podConfig(env, "masked", nil))
		for _, sc := range []*runtimeapi.LinuxContainerSecurityContext{
			{MaskedPaths: []string{"/nonexistent"}, ReadonlyPaths: []string{"/nonexistent"}},
			nil, // containerd's CRI sends none unless kubelet does (procMount: Unmasked)
		} {
			cc := sleeper(env, fmt.Sprintf("app%d", len(sc.GetMaskedPaths())))
			cc.Linux.SecurityContext = sc
			id := p.mustStart(ctx, t, cc)
			v := strings.TrimSpace(p.exec(ctx, t, id, "cat /proc/sys/kernel/panic"))
			// Writing the host's own value back: harmless if it got through.
			out := p.exec(ctx, t, id, "exec 2>&1; grep ' /proc/sys ' /proc/mounts; echo "+v+" > /proc/sys/kernel/panic; echo rc=$?; wc -c < /proc/timer_list; true")
			if !strings.Contains(out, "/proc/sys proc ro,") || !strings.Contains(out, "Read-only file system") || strings.Contains(out, "rc=0") {
				t.Errorf("%s: /proc/sys is not read-only in the container:\n%s", cc.Metadata.Name, out)
			}
			if !strings.HasSuffix(strings.TrimSpace(out), "\n0") {
				t.Errorf("%s: /proc/timer_list is not masked (want 0 bytes):\n%s", cc.Metadata.Name, out)
			}
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("5: sandbox in another pod's cgroup", func(t *testing.T) {
		victimCfg := podConfig(env, "cg-victim", nil)
		parent := "/" + env.Namespace + "/pod" + victimCfg.Metadata.Uid // kubelet's form: .../pod<uid>
		victimCfg.Linux.CgroupParent = parent
		victim := runPodT(ctx, t, env, victimCfg)
		vid := victim.mustStart(ctx, t, sleeper(env, "app"))
		attackerCfg := podConfig(env, "cg-attacker", nil)
		attackerCfg.Linux.CgroupParent = parent
		attacker := runPodT(ctx, t, env, attackerCfg)
		aid := attacker.mustStart(ctx, t, sleeper(env, "app"))
		got := map[string]string{}
		for name, c := range map[string]struct {
			p  *criPod
			id string
		}{"victim": {victim, vid}, "attacker": {attacker, aid}} {
			for _, l := range strings.Split(c.p.exec(ctx, t, c.id, "cat /proc/self/cgroup"), "\n") {
				if f := strings.SplitN(l, ":", 3); len(f) == 3 && strings.Contains(f[1], "memory") {
					got[name] = f[2]
				}
			}
		}
		// The pod's own kubelet cgroup is kept; another pod's is not.
		if want := parent + "/" + vid; got["victim"] != want {
			t.Errorf("victim's container is in %q, want its kubelet pod cgroup %q", got["victim"], want)
		}
		if want := "/cci-shim/" + e2eenv.CRINamespace + "/pod-" + attacker.id + "/" + aid; got["attacker"] != want {
			t.Errorf("attacker's container is in %q, want the shim's %q", got["attacker"], want)
		}
		victim.remove(ctx, t)
		attacker.remove(ctx, t)
		removeCgroups(t, parent) // kubelet removes its pod cgroups
		assertClean(t, env)
		// The shim's own pod cgroup goes with the pod.
		if left, _ := filepath.Glob("/sys/fs/cgroup/*/cci-shim/" + e2eenv.CRINamespace + "/pod-" + attacker.id); len(left) > 0 {
			t.Errorf("the pod's cgroup is left: %v", left)
		}
	})

	t.Run("13: seccomp unconfined on runc gets the default profile", func(t *testing.T) {
		p := runPodT(ctx, t, env, podConfig(env, "unconfined", nil))
		cc := sleeper(env, "app")
		cc.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}
		id := p.mustStart(ctx, t, cc)
		if out := p.exec(ctx, t, id, "grep Seccomp: /proc/self/status"); !strings.Contains(out, "Seccomp:\t2") {
			t.Errorf("the container runs without a seccomp filter:\n%s", out)
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("13: the insecure node option lets CAP_SYS_ADMIN through on runc, loudly", func(t *testing.T) {
		if err := env.SetNodeConfig(insecureHostRootCaps); err != nil {
			t.Fatal(err)
		}
		defer env.SetNodeConfig("")
		p := runPodT(ctx, t, env, podConfig(env, "insecure", nil)) // a new pod: a shim that reads the option
		cc := sleeper(env, "admin")
		cc.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}}
		id := p.mustStart(ctx, t, cc)
		if out := p.exec(ctx, t, id, "grep CapEff /proc/self/status"); !strings.Contains(out, "CapEff:\t00000000a82425fb") {
			t.Errorf("the container's effective capabilities: %q, want the defaults and CAP_SYS_ADMIN", out)
		}
		const warning = `INSECURE: container \"admin\" runs with host-root capabilities CAP_SYS_ADMIN on a backend that shares the host kernel, because policy.insecure_allow_host_root_capabilities = true; never set it on a node that runs tenants`
		if !strings.Contains(env.ContainerdLog(), warning) {
			t.Errorf("the shim did not log %s", warning)
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("6: a container without limits gets the pod's", func(t *testing.T) {
		cfg := podConfig(env, "nolimits", nil)
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30}
		p := runPodT(ctx, t, env, cfg)
		id := p.mustStart(ctx, t, sleeper(env, "app"))
		out := p.exec(ctx, t, id, "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes")
		if want := fmt.Sprintf("50000\n%d\n", 1<<30); out != want {
			t.Errorf("cfs quota, memory limit = %q, want the pod's %q", out, want)
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("6: a container the annotation does not list stays within the pod", func(t *testing.T) {
		// kubectl debug adds a container after the description was fixed:
		// it keeps its own CRI limits, capped at the pod's size.
		cfg := podConfig(env, "unlisted", map[string]string{"resources.cci.io/containers": `[{"name":"app","limits":{"cpu":"500m","memory":"1Gi"}}]`})
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30}
		p := runPodT(ctx, t, env, cfg)
		app := sleeper(env, "app")
		app.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30}
		p.mustStart(ctx, t, app)
		intruder := sleeper(env, "intruder")
		intruder.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 800000, CpuShares: 8192, MemoryLimitInBytes: 16 << 30}
		id := p.mustStart(ctx, t, intruder)
		out := p.exec(ctx, t, id, "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes")
		if want := fmt.Sprintf("50000\n%d\n", 1<<30); out != want {
			t.Errorf("an unlisted container asking for 8 cores and 16 GiB got cfs quota, memory limit %q, want the pod's %q", out, want)
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("7: cgroupfs is read-only: no raising one's own limits", func(t *testing.T) {
		cfg := podConfig(env, "cgro", nil)
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 1 << 30}
		p := runPodT(ctx, t, env, cfg)
		id := p.mustStart(ctx, t, sleeper(env, "app"))
		out := p.exec(ctx, t, id, "exec 2>&1; echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes; echo rc=$?; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "+
			"echo > /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device; echo rc=$?; true")
		if strings.Contains(out, "rc=0") || !strings.Contains(out, "Read-only file system") || !strings.Contains(out, fmt.Sprint(1<<30)) {
			t.Errorf("the container changed its own cgroup:\n%s", out)
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})
}

// removeCgroups removes a cgroup tree a test made under every v1
// controller (children first), as kubelet would remove a pod's.
func removeCgroups(t *testing.T, rel string) {
	t.Helper()
	ctls, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, ctl := range ctls {
		root := filepath.Join(ctl, rel)
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				t.Errorf("removing cgroup %s: %v", dirs[i], err)
			}
		}
	}
}
