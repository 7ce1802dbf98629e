package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// The tests in this file show the platform rules end to end, through CRI
// (the calls kubelet and crictl make) and ctr: R3 refusals, R4 hostPath
// replacement, R5 pod size, R6 architecture, R9 sysctls, R10 /dev/shm.
// Every refusal is checked for the tenant-facing text and for leaving
// nothing behind.

// Texts a tenant sees, as documented in sandbox/ and shm/.
const (
	allowedSysctlsText = "allowed: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.* except net.netfilter.* and net.ipv4.vs.*"
	hostPathText       = "allowed: hostPath volumes replaced by annotation coordinator.cci.io/hostpath-replacement (policyType remove, replaceByLocalDir or replaceByEmptyDir)"
	privilegedText     = `privileged "true" is not allowed`
)

// TestPolicySysctls: allowed pod sysctls are set in the pod's namespaces and
// visible in its containers (R9); the host keeps its own values.
func TestPolicySysctls(t *testing.T) { forEachBackend(t, testPolicySysctls) }

func testPolicySysctls(t *testing.T, b testBackend) {
	env := startPolicyEnv(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	want := map[string]string{
		"net.core.somaxconn": "1024",
		"kernel.shmmax":      "1073741824",
		"kernel.msgmax":      "16384",
		"fs.mqueue.msg_max":  "20",
	}
	host := map[string]string{}
	for k := range want {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		if err != nil {
			t.Fatal(err)
		}
		host[k] = strings.TrimSpace(string(b))
	}
	cfg := podConfig(env, "sysctls", nil)
	cfg.Linux.Sysctls = want
	if b.isGVisor() {
		// gVisor's kernel keeps its own values and runsc ignores these:
		// the pod is refused, naming the sysctl and the backend.
		p, err := runPod(ctx, env, cfg)
		if err == nil {
			p.remove(ctx, t)
		}
		wantRefused(t, "RunPodSandbox", err, `linux.sysctl "fs.mqueue.msg_max=20" is not allowed (the gvisor backend cannot apply it`)
		assertClean(t, env)
		return
	}
	p := mustRunPod(ctx, t, env, cfg)
	id := p.mustStart(ctx, t, sleeper(env, "app"))
	for k, v := range want {
		out := p.exec(ctx, t, id, "sysctl "+k+"; cat /proc/sys/"+strings.ReplaceAll(k, ".", "/"))
		if wantOut := k + " = " + v + "\n" + v + "\n"; out != wantOut {
			t.Errorf("in the container: %q, want %q", out, wantOut)
		}
		b, _ := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		if got := strings.TrimSpace(string(b)); got != host[k] {
			t.Errorf("host %s changed from %s to %s", k, host[k], got)
		}
	}
	p.remove(ctx, t)
	assertClean(t, env)
}

// TestPolicyRefusals: each forbidden pod or container fails RunPodSandbox or
// StartContainer (ctr run) with the documented message and leaves nothing
// behind (R3, R4, R5, R9, R10).
func TestPolicyRefusals(t *testing.T) { forEachBackend(t, testPolicyRefusals) }

func testPolicyRefusals(t *testing.T, b testBackend) {
	env := startPolicyEnv(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	sandboxCases := []struct {
		name  string
		setup func(*runtimeapi.PodSandboxConfig)
		want  []string
	}{
		{"sysctl kernel.panic", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"kernel.panic": "10", "net.core.somaxconn": "1024"}
		}, []string{`container "sysctl-kernel-panic": sysctl "kernel.panic" is not allowed; ` + allowedSysctlsText}},
		{"sysctl net.netfilter", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.Sysctls = map[string]string{"net.netfilter.nf_conntrack_max": "1000"}
		}, []string{`sysctl "net.netfilter.nf_conntrack_max" is not allowed; ` + allowedSysctlsText}},
		{"host network", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}
		}, []string{`linux.namespaces.network "host" is not allowed (host network namespace); allowed: a pod-private network namespace`}},
		{"host pid", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}}
		}, []string{`linux.namespaces.pid "host" is not allowed (host pid namespace); allowed: a pod-private pid namespace`}},
		{"host ipc", func(c *runtimeapi.PodSandboxConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}}
		}, []string{`linux.namespaces.ipc "host" is not allowed (host ipc namespace); allowed: a pod-private ipc namespace`}},
		{"privileged pod", func(c *runtimeapi.PodSandboxConfig) {
			// CRI lets only a privileged sandbox hold a privileged container,
			// and a privileged sandbox is refused already.
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
		}, []string{`container "privileged-pod": ` + privilegedText, "allowed: unprivileged containers with fine-grained capabilities (e.g. CAP_SYS_ADMIN)"}},
		{"pod of 40 cores", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{"resources.cci.io/containers": `[{"name":"app","limits":{"cpu":"40","memory":"80Gi"}}]`}
		}, []string{`pod CPU "40 cores" is not allowed`, "allowed: 0.25 to 32 cores, or exactly 48 or 64 cores"}},
		{"shm larger than the pod", func(c *runtimeapi.PodSandboxConfig) {
			c.Annotations = map[string]string{
				"resources.cci.io/containers": `[{"name":"app","limits":{"cpu":"500m","memory":"1Gi"}}]`,
				"shm.cci.io/size":             "2Gi",
			}
		}, []string{"/dev/shm size 2 GiB (from annotation shm.cci.io/size) is larger than the pod memory 1 GiB; allowed: at most the pod memory"}},
	}
	for _, tc := range sandboxCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := podConfig(env, strings.NewReplacer(" ", "-", ".", "-").Replace(tc.name), nil)
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
	otherPodVolume := filepath.Join(env.Dir, "kubelet", "pods", podUID("someone-else"), "volumes", "kubernetes.io~configmap", "cfg")
	for _, d := range []string{hostDir, otherPodVolume} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	containerCases := []struct {
		name  string
		setup func(*runtimeapi.ContainerConfig)
		want  []string
	}{
		{"hostPath", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: hostDir}}
		}, []string{`container "app": hostPath volume "` + hostDir + `" is not allowed (mounted at /data); ` + hostPathText}},
		{"another pod's kubelet volume", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/etc/cfg", HostPath: otherPodVolume, Readonly: true}}
		}, []string{`hostPath volume "` + otherPodVolume + `" is not allowed (mounted at /etc/cfg); ` + hostPathText}},
	}
	for _, tc := range containerCases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustRunPod(ctx, t, env, podConfig(env, "refused-container", nil))
			cc := sleeper(env, "app")
			tc.setup(cc)
			id, err := p.start(ctx, cc)
			wantRefused(t, "StartContainer", err, tc.want...)
			if id != "" {
				st, serr := p.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
				if serr == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Errorf("refused container is running")
				}
			}
			p.remove(ctx, t)
			assertClean(t, env)
		})
	}

	t.Run("ctr", func(t *testing.T) {
		for _, tc := range []struct {
			flag string
			want []string
		}{
			{"--privileged", []string{privilegedText}},
			{"--net-host", []string{`linux.namespaces.network "host" is not allowed (host network namespace)`}},
		} {
			id := "refused" + strings.ReplaceAll(tc.flag, "-", "")
			_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, tc.flag, env.Image, id, "true")
			if err == nil {
				t.Errorf("ctr run %s succeeded", tc.flag)
			}
			for _, s := range tc.want {
				if !strings.Contains(errOut, s) {
					t.Errorf("ctr run %s: error does not say %q:\n%s", tc.flag, s, errOut)
				}
			}
			t.Logf("tenant sees (ctr run %s): %s", tc.flag, ctrError(errOut))
			env.Ctr("container", "rm", id)
		}
		assertClean(t, env)
	})
}

// TestPolicyShm: /dev/shm is a 64 MiB tmpfs by default, the annotation or a
// Memory emptyDir sizes it, writes past it fail, CAP_SYS_ADMIN may remount
// it (R10).
//
// CAP_SYS_ADMIN is host root on runc, refused there unless the node sets
// policy.insecure_allow_host_root_capabilities (R25): the runc env sets it
// so that runc can show the remount; gVisor is where a container holds
// CAP_SYS_ADMIN for real.
func TestPolicyShm(t *testing.T) { forEachBackend(t, testPolicyShm) }

func testPolicyShm(t *testing.T, b testBackend) {
	var extra []string
	if !b.isGVisor() {
		extra = append(extra, insecureHostRootCaps)
	}
	env := b.startEnv(t, true, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("default 64 MiB", func(t *testing.T) {
		p := mustRunPod(ctx, t, env, podConfig(env, "shm-default", nil))
		id := p.mustStart(ctx, t, sleeper(env, "app"))
		out := p.exec(ctx, t, id, "grep ' /dev/shm ' /proc/mounts; df -k /dev/shm")
		if !strings.Contains(out, " /dev/shm "+b.fsType("tmpfs")+" ") {
			t.Errorf("/dev/shm is not a tmpfs:\n%s", out)
		}
		if got := dfKiB(t, out); got != 64<<10 {
			t.Errorf("/dev/shm is %d KiB, want %d:\n%s", got, 64<<10, out)
		}
		// It is the pod's tmpfs on the host (containerd's own sandbox shm
		// is 64 MiB too).
		p.exec(ctx, t, id, "echo marker > /dev/shm/marker")
		hostShm := filepath.Join(env.Dir, "volumes", e2eenv.CRINamespace, p.id, "shm")
		if b, err := os.ReadFile(filepath.Join(hostShm, "marker")); err != nil || string(b) != "marker\n" {
			t.Errorf("/dev/shm/marker is not in the pod's host tmpfs %s: %q, %v", hostShm, b, err)
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("annotation 128Mi, full, remount by CAP_SYS_ADMIN", func(t *testing.T) {
		p := mustRunPod(ctx, t, env, podConfig(env, "shm-128", map[string]string{"shm.cci.io/size": "128Mi"}))
		id := p.mustStart(ctx, t, sleeper(env, "app"))
		if got := dfKiB(t, p.exec(ctx, t, id, "df -k /dev/shm")); got != 128<<10 {
			t.Errorf("/dev/shm is %d KiB, want %d", got, 128<<10)
		}
		out := p.exec(ctx, t, id, "dd if=/dev/zero of=/dev/shm/x bs=1M count=200 2>&1; echo rc=$?; ls -l /dev/shm/x; rm /dev/shm/x")
		if !strings.Contains(out, "No space left on device") || strings.Contains(out, "rc=0") {
			t.Errorf("writing 200 MiB to a 128 MiB /dev/shm:\n%s", out)
		}
		// Not privileged: an unprivileged container cannot remount.
		r, err := p.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"mount", "-o", "remount,size=256m", "/dev/shm"}, Timeout: 30})
		if err != nil || r.ExitCode == 0 {
			t.Errorf("remount without CAP_SYS_ADMIN: err %v, exit %d", err, r.GetExitCode())
		}
		admin := sleeper(env, "admin")
		admin.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}}
		aid := p.mustStart(ctx, t, admin)
		if b.isGVisor() {
			// gVisor's remount never changes a size: runsc 20221219
			// refuses it (EINVAL), runsc 2026-08 changes the mount
			// flags only and returns 0. The one part of R10 gVisor
			// cannot give; the size stays as the pod set it.
			r, err := p.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: aid, Cmd: []string{"mount", "-o", "remount,size=256m", "/dev/shm"}, Timeout: 30})
			if err != nil {
				t.Fatal(err)
			}
			if got := dfKiB(t, p.exec(ctx, t, aid, "df -k /dev/shm")); got != 128<<10 {
				t.Errorf("after remount,size=256m on gvisor /dev/shm is %d KiB, want it unchanged at %d", got, 128<<10)
			}
			t.Logf("remount,size=256m on gvisor: exit %d, stderr %q; /dev/shm stays 128 MiB", r.ExitCode, r.Stderr)
		} else {
			out = p.exec(ctx, t, aid, "mount -o remount,size=256m /dev/shm && df -k /dev/shm")
			if got := dfKiB(t, out); got != 256<<10 {
				t.Errorf("after remount /dev/shm is %d KiB, want %d:\n%s", got, 256<<10, out)
			}
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("Memory emptyDir at /dev/shm", func(t *testing.T) {
		// kubelet hands a medium: Memory emptyDir over as a host tmpfs of
		// sizeLimit under its pod dir.
		cfg := podConfig(env, "shm-emptydir", nil)
		dshm := filepath.Join(env.Dir, "kubelet", "pods", cfg.Metadata.Uid, "volumes", "kubernetes.io~empty-dir", "dshm")
		if err := os.MkdirAll(dshm, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", dshm, "tmpfs", 0, "size=96m"); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(dshm, unix.MNT_DETACH)
		p := mustRunPod(ctx, t, env, cfg)
		cc := sleeper(env, "app")
		cc.Mounts = []*runtimeapi.Mount{{ContainerPath: "/dev/shm", HostPath: dshm}}
		id := p.mustStart(ctx, t, cc)
		if got := dfKiB(t, p.exec(ctx, t, id, "df -k /dev/shm")); got != 96<<10 {
			t.Errorf("/dev/shm is %d KiB, want the emptyDir's %d", got, 96<<10)
		}
		p.remove(ctx, t)
		unix.Unmount(dshm, unix.MNT_DETACH)
		assertClean(t, env)
	})

	t.Run("ctr annotation", func(t *testing.T) {
		out, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, "--annotation", "shm.cci.io/size=32Mi", env.Image, "shm-ctr", "df", "-k", "/dev/shm")
		if err != nil {
			t.Fatalf("ctr run: %v: %s", err, errOut)
		}
		if got := dfKiB(t, out); got != 32<<10 {
			t.Errorf("/dev/shm is %d KiB, want %d", got, 32<<10)
		}
		_, errOut, err = env.CtrRun("--rm", "--runtime", cciRuntime, "--annotation", "shm.cci.io/size=3Gi", env.Image, "shm-ctr-big", "true")
		if err == nil || !strings.Contains(errOut, "/dev/shm size 3 GiB (from annotation shm.cci.io/size) is larger than the pod memory 2 GiB") {
			t.Errorf("a 3 GiB /dev/shm in a default (2 GiB) pod: err %v:\n%s", err, errOut)
		}
		t.Logf("tenant sees (ctr run): %s", ctrError(errOut))
		env.Ctr("container", "rm", "shm-ctr-big")
		assertClean(t, env)
	})
}

// TestPolicyHostPath: hostPath volumes named in
// coordinator.cci.io/hostpath-replacement are replaced by pod-private,
// size-limited dirs shared by the pod's containers, or removed; the host
// dir is never touched (R4).
func TestPolicyHostPath(t *testing.T) { forEachBackend(t, testPolicyHostPath) }

func testPolicyHostPath(t *testing.T, b testBackend) {
	env := startPolicyEnv(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	host := map[string]string{}
	for _, n := range []string{"hp-mem", "hp-disk", "hp-gone"} {
		host[n] = filepath.Join(env.Dir, "host", n)
		if err := os.MkdirAll(host[n], 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(host[n], "host-secret"), []byte("host"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	repl := `[{"name":"hp-mem","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"32Mi","medium":"Memory"}},` +
		`{"name":"hp-disk","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"64Mi"}},` +
		`{"name":"hp-gone","policyType":"remove"}]`
	p := mustRunPod(ctx, t, env, podConfig(env, "hostpath", map[string]string{"coordinator.cci.io/hostpath-replacement": repl}))
	mounts := []*runtimeapi.Mount{
		{ContainerPath: "/mem", HostPath: host["hp-mem"]},
		{ContainerPath: "/disk", HostPath: host["hp-disk"]},
		{ContainerPath: "/gone", HostPath: host["hp-gone"]},
	}
	app, side := sleeper(env, "app"), sleeper(env, "sidecar")
	app.Mounts, side.Mounts = mounts, mounts
	aid := p.mustStart(ctx, t, app)
	sid := p.mustStart(ctx, t, side)

	t.Run("Memory emptyDir", func(t *testing.T) {
		out := p.exec(ctx, t, aid, "ls -A /mem; grep ' /mem ' /proc/mounts; df -k /mem")
		// ls -A prints nothing: the mount line comes first.
		wantPrefix := "tmpfs /mem tmpfs "
		if b.isGVisor() {
			wantPrefix = "none /mem " + b.fsType("tmpfs") + " "
		}
		if !strings.HasPrefix(out, wantPrefix) {
			t.Errorf("/mem is not an empty tmpfs:\n%s", out)
		}
		if got := dfKiB(t, out); got != 32<<10 {
			t.Errorf("/mem is %d KiB, want %d", got, 32<<10)
		}
		out = p.exec(ctx, t, aid, "dd if=/dev/zero of=/mem/big bs=1M count=40 2>&1; echo rc=$?; rm -f /mem/big")
		if !strings.Contains(out, "No space left on device") {
			t.Errorf("writing 40 MiB to a 32 MiB volume:\n%s", out)
		}
	})
	t.Run("disk emptyDir", func(t *testing.T) {
		out := p.exec(ctx, t, aid, "ls -A /disk | grep -v '^lost+found$'; grep ' /disk ' /proc/mounts; df -k /disk")
		if !strings.Contains(out, " /disk "+b.fsType("ext4")+" ") || strings.Contains(out, "host-secret") {
			t.Errorf("/disk is not an empty ext4 volume:\n%s", out)
		}
		// ext4 keeps a journal and metadata of the 64 MiB image.
		if got := dfKiB(t, out); got < 48<<10 || got > 64<<10 {
			t.Errorf("/disk is %d KiB, want about %d", got, 64<<10)
		}
	})
	t.Run("shared by the pod, private from the host", func(t *testing.T) {
		p.exec(ctx, t, aid, "echo from-app > /mem/f; echo from-app > /disk/f")
		if out := p.exec(ctx, t, sid, "cat /mem/f /disk/f"); out != "from-app\nfrom-app\n" {
			t.Errorf("sidecar reads %q, want the app's files", out)
		}
		for _, n := range []string{"hp-mem", "hp-disk"} {
			e, _ := os.ReadDir(host[n])
			if len(e) != 1 || e[0].Name() != "host-secret" {
				t.Errorf("host dir %s changed: %v", host[n], e)
			}
		}
	})
	t.Run("remove", func(t *testing.T) {
		out := p.exec(ctx, t, aid, "grep -c ' /gone ' /proc/mounts; test -e /gone/host-secret && echo LEAK; true")
		if strings.TrimSpace(out) != "0" {
			t.Errorf("/gone is still mounted or shows the host dir:\n%s", out)
		}
	})
	p.remove(ctx, t)
	assertClean(t, env)
	for n, d := range host {
		if b, err := os.ReadFile(filepath.Join(d, "host-secret")); err != nil || string(b) != "host" {
			t.Errorf("host dir %s: host-secret = %q, %v", n, b, err)
		}
	}
}

// TestPolicyPodSize: containers get the normalised limits of
// resources.cci.io/containers (R5), whatever kubelet put in the container
// config; oomScoreAdj is clamped to what the host allows.
func TestPolicyPodSize(t *testing.T) { forEachBackend(t, testPolicyPodSize) }

func testPolicyPodSize(t *testing.T, b testBackend) {
	env := startPolicyEnv(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// As kubelet delivers it: the pod's limits with the sandbox (app 300m/1Gi
	// + sidecar 250m/512Mi), each container's own with the container; the
	// annotation (the webhook writes it) says which is which and must match.
	// app 300m/1Gi -> 500m/1Gi; sidecar 250m/512Mi; pod 750m/1.5Gi -> 2 GiB
	// (whole GiB, ratio 2.67): the 512 MiB increment goes to app.
	const containers = `[{"name":"app","limits":{"cpu":"300m","memory":"1Gi"}},{"name":"sidecar","limits":{"cpu":"250m","memory":"512Mi"}}]`
	cfg := podConfig(env, "podsize", map[string]string{"resources.cci.io/containers": containers})
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 55000, MemoryLimitInBytes: 1536 << 20}
	p := mustRunPod(ctx, t, env, cfg)
	const cgroupScript = "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.limit_in_bytes /proc/1/oom_score_adj"
	for _, c := range []struct {
		name                  string
		kubeletQuota, kubelet int64 // what kubelet asked: the container's own limits
		kubeletShares         int64 // and its request (requests equal limits here)
		quota, shares, memory int64
	}{
		{"sidecar", 25000, 512 << 20, 256, 25000, 256, 512 << 20},
		{"app", 30000, 1 << 30, 307, 50000, 512, 1536 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc := sleeper(env, c.name)
			cc.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: c.kubeletQuota, CpuShares: c.kubeletShares, MemoryLimitInBytes: c.kubelet, OomScoreAdj: -997}
			id := p.mustStart(ctx, t, cc)
			floor := 0
			if pids := env.ShimPIDs(e2eenv.CCIShimBinary); len(pids) == 1 {
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pids[0]))
				floor, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			} else {
				t.Errorf("cci shims: %v, want 1", pids)
			}
			var got string
			if b.isGVisor() {
				// gVisor's cgroupfs is its own, not the host's: read
				// what the sandbox was given, the backend's spec.
				got = bundleLimits(t, env, p.id, id)
			} else {
				got = p.exec(ctx, t, id, cgroupScript)
			}
			want := fmt.Sprintf("%d\n100000\n%d\n%d\n%d\n", c.quota, c.shares, c.memory, max(-997, floor))
			if got != want {
				t.Errorf("cfs quota, period, shares, memory limit, oom_score_adj =\n%s want\n%s", got, want)
			}
		})
	}
	p.remove(ctx, t)
	assertClean(t, env)

	t.Run("ctr container sized from its own limits", func(t *testing.T) {
		// --cpus 0.3 --memory-limit 1 GiB: a one-container pod of 0.5 core,
		// 1 GiB. ctr mounts no cgroupfs: read the task's cgroup on the host.
		const id = "podsize-ctr"
		if _, errOut, err := env.CtrRun("-d", "--runtime", cciRuntime, "--cpus", "0.3", "--memory-limit", strconv.Itoa(1<<30), env.Image, id, "sleep", "600"); err != nil {
			t.Fatalf("ctr run: %v: %s", err, errOut)
		}
		defer func() {
			env.Ctr("task", "rm", "-f", id)
			env.Ctr("container", "rm", id)
		}()
		// The shim chooses the cgroup (R24): read it from the process.
		pid := taskPid(t, env, id)
		var got []string
		for _, f := range []string{"cpu" + hostCgroup(t, pid, "cpu") + "/cpu.cfs_quota_us", "memory" + hostCgroup(t, pid, "memory") + "/memory.limit_in_bytes"} {
			b, err := os.ReadFile("/sys/fs/cgroup/" + f)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, strings.TrimSpace(string(b)))
		}
		if want := []string{"50000", strconv.Itoa(1 << 30)}; !slices.Equal(got, want) {
			t.Errorf("cfs quota, memory limit = %q, want %q", got, want)
		}
	})
	assertClean(t, env)
}
