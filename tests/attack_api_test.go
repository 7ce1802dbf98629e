package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// The attack suite of issue 9 through the containerd API: what a tenant
// with ctr (the env's own namespace) or containerd's Go client can put into
// a spec that CRI would never produce. Refused with the documented message
// or without effect, leaving nothing behind.

// TestAttackCtr: items 1, 5, 7, 8, 9, 10, 12 and 13 with the ctr command.
func TestAttackCtr(t *testing.T) {
	env := startEnv(t, true)
	loop, major, minor := envLoopDevice(t, env)
	hostRoot := filepath.Join(env.Dir, "hostroot")
	if err := os.MkdirAll(filepath.Join(hostRoot, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}

	for i, tc := range []struct {
		item, name string
		args       []string // ctr run flags; the image (or --rootfs dir) and id follow
		image      string
		want       []string
	}{
		{"1", "host block device", []string{"--device", loop}, "",
			[]string{fmt.Sprintf(`linux.devices "%s b %d:%d" is not allowed; %s`, loop, major, minor, devicesText)}},
		{"7", "proc mounted elsewhere: writable host sysctls", []string{"--mount", "type=proc,src=proc,dst=/hostproc"}, "",
			[]string{`mount /hostproc "proc" is not allowed (proc is mounted only at /proc); ` + mountsAllowed}},
		{"7", "overlay with host lowerdirs", []string{"--mount", "type=overlay,src=overlay,dst=/h,options=lowerdir=/etc:/root"}, "",
			[]string{`mount type "overlay" is not allowed (mounted at /h); ` + mountsAllowed}},
		{"7", "bind of the host's /", []string{"--mount", "type=bind,src=/,dst=/host,options=rbind:rw"}, "",
			[]string{`hostPath volume "/" is not allowed (mounted at /host); ` + hostPathText}},
		{"7", "sysfs read-write", []string{"--mount", "type=sysfs,src=sysfs,dst=/sys,options=rw"}, "",
			[]string{`privileged "true" is not allowed (/sys mounted read-write)`}},
		{"7", "rootfs propagation shared", []string{"--rootfs-propagation", "shared"}, "",
			[]string{`linux.rootfsPropagation "shared" is not allowed (mounts made in the container would propagate to the host); allowed: private, rprivate, slave, rslave`}},
		{"7", "a host directory as rootfs", []string{"--rootfs"}, hostRoot,
			[]string{`rootfs "no mounts" is not allowed; allowed: a container created from an image snapshot`}},
		{"8", "the host network through /proc/2", []string{"--with-ns", "network:/proc/2/ns/net"}, "",
			[]string{`linux.namespaces.network "/proc/2/ns/net" is not allowed (a pod's sandbox starts in new namespaces); allowed: a new network namespace, or one of this pod's own`}},
		{"8", "the host pid namespace through /proc/2", []string{"--with-ns", "pid:/proc/2/ns/pid"}, "",
			[]string{`linux.namespaces.pid "/proc/2/ns/pid" is not allowed`}},
		{"13", "CAP_SYS_ADMIN on runc", []string{"--cap-add", "CAP_SYS_ADMIN"}, "",
			[]string{`process.capabilities "CAP_SYS_ADMIN" is not allowed (this node's backend runs containers on the host kernel`, hostRootText}},
		{"13", "CAP_SYS_MODULE on runc", []string{"--cap-add", "CAP_SYS_MODULE"}, "",
			[]string{`process.capabilities "CAP_SYS_MODULE" is not allowed`, hostRootText}},
	} {
		t.Run(tc.item+": "+tc.name, func(t *testing.T) {
			id := fmt.Sprintf("atk-%s-%d", tc.item, i)
			image := tc.image
			if image == "" {
				image = env.Image
			}
			args := append([]string{"--rm", "--runtime", cciRuntime}, tc.args...)
			_, errOut, err := env.CtrRun(append(args, image, id, "true")...)
			wantCtrRefused(t, "ctr run "+strings.Join(tc.args, " "), err, errOut, tc.want...)
			env.Ctr("container", "rm", id)
			assertClean(t, env)
		})
	}

	t.Run("5: --cgroup of another container", func(t *testing.T) {
		// The victim is a pod of 0.25 core and 1 GiB, the attacker of 2
		// cores and 8 GiB: in the victim's cgroup it would raise its limits.
		victim, victimCg := ctrRunDetached(t, env, "cg-victim", "--cpus", "0.25", "--memory-limit", fmt.Sprint(1<<30))
		attacker, attackerCg := ctrRunDetached(t, env, "cg-attacker", "--cgroup", victimCg, "--cpus", "2", "--memory-limit", fmt.Sprint(8<<30))
		if attackerCg == victimCg || attackerCg != "/cci-shim/"+env.Namespace+"/cg-attacker" {
			t.Errorf("attacker asked for %s and is in %s, want its own /cci-shim/%s/cg-attacker", victimCg, attackerCg, env.Namespace)
		}
		for f, want := range map[string]string{"memory/memory.limit_in_bytes": fmt.Sprint(1 << 30), "cpu/cpu.cfs_quota_us": "25000"} {
			ctl, file, _ := strings.Cut(f, "/")
			if b, err := os.ReadFile("/sys/fs/cgroup/" + ctl + victimCg + "/" + file); err != nil || strings.TrimSpace(string(b)) != want {
				t.Errorf("victim's %s is %q (%v), want its own %s", file, b, err, want)
			}
		}
		removeTask(t, env, "", victim)
		removeTask(t, env, "", attacker)
		assertClean(t, env)
	})

	t.Run("9: exec as root in a non-root container", func(t *testing.T) {
		id, _ := ctrRunDetached(t, env, "exec-user", "--user", "1000:1000")
		_, errOut, err := env.Ctr("task", "exec", "--exec-id", "root", "--user", "0:0", id, "id")
		wantCtrRefused(t, "ctr task exec --user 0:0", err, errOut, `exec process.user "0:0" is not allowed (wider than the container's); allowed: the container's user 1000:1000`)
		out, errOut, err := env.Ctr("task", "exec", "--exec-id", "same", id, "id", "-u")
		if err != nil || strings.TrimSpace(out) != "1000" {
			t.Errorf("exec as the container's user: %q, %v: %s", out, err, errOut)
		}
		removeTask(t, env, "", id)
		assertClean(t, env)
	})

	t.Run("10: sandbox-id annotation joining another pod's shim", func(t *testing.T) {
		victim, _ := ctrRunDetached(t, env, "shm-victim")
		if _, errOut, err := env.Ctr("task", "exec", "--exec-id", "w", victim, "sh", "-c", "echo victim-secret > /dev/shm/secret"); err != nil {
			t.Fatalf("exec: %v: %s", err, errOut)
		}
		shims := env.ShimPIDs(e2eenv.CCIShimBinary)
		_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime,
			"--annotation", "io.kubernetes.cri.container-type=container", "--annotation", "io.kubernetes.cri.sandbox-id="+victim,
			env.Image, "shm-thief", "cat", "/dev/shm/secret")
		wantCtrRefused(t, "ctr run --annotation io.kubernetes.cri.sandbox-id="+victim, err, errOut,
			`annotation io.kubernetes.cri.sandbox-id "`+victim+`" is not allowed (the container's pod identity differs from the one its sandbox recorded)`)
		if strings.Contains(errOut, "victim-secret") {
			t.Errorf("the thief read the victim's /dev/shm: %s", errOut)
		}
		env.Ctr("container", "rm", "shm-thief")
		if now := env.ShimPIDs(e2eenv.CCIShimBinary); len(now) != len(shims) {
			t.Errorf("cci shims %v before, %v after: the refused container started one", shims, now)
		}
		if out, _, err := env.Ctr("task", "exec", "--exec-id", "r", victim, "cat", "/dev/shm/secret"); err != nil || out != "victim-secret\n" {
			t.Errorf("the victim lost its /dev/shm: %q, %v", out, err)
		}
		removeTask(t, env, "", victim)
		assertClean(t, env)
	})

	t.Run("10: a ctr container claiming a CRI pod", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cfg := podConfig(env, "claimed", nil)
		p := runPodT(ctx, t, env, cfg)
		_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime,
			"--annotation", "io.kubernetes.cri.container-type=container", "--annotation", "io.kubernetes.cri.sandbox-id="+p.id,
			"--annotation", "io.kubernetes.cri.sandbox-uid="+cfg.Metadata.Uid, "--annotation", "io.kubernetes.cri.sandbox-name=claimed",
			"--annotation", "io.kubernetes.cri.sandbox-namespace=default", env.Image, "claimer", "true")
		wantCtrRefused(t, "ctr run claiming CRI pod "+p.id, err, errOut, `container "claimer": its pod's sandbox was not created by this shim`)
		env.Ctr("container", "rm", "claimer")
		p.remove(ctx, t)
		assertClean(t, env)
	})
}

// wantCtrRefused checks that a ctr command failed with every text on its
// stderr, and logs what the tenant saw.
func wantCtrRefused(t *testing.T, what string, err error, stderr string, texts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want a refusal with %q", what, texts)
	}
	for _, s := range texts {
		if !strings.Contains(stderr, s) {
			t.Errorf("%s: error does not say %q:\n%s", what, s, stderr)
		}
	}
	t.Logf("tenant sees (%s): %s", what, ctrError(stderr))
}

// ctrRunDetached runs a sleeping ctr container with the cci runtime and
// returns its id and its memory cgroup on the host.
func ctrRunDetached(t *testing.T, env *e2eenv.Env, id string, args ...string) (string, string) {
	t.Helper()
	run := append([]string{"-d", "--runtime", cciRuntime}, args...)
	if _, errOut, err := env.CtrRun(append(run, env.Image, id, "sh", "-c", "while :; do sleep 1; done")...); err != nil {
		t.Fatalf("ctr run %s: %v: %s", id, err, errOut)
	}
	return id, hostCgroup(t, taskPid(t, env, id), "memory")
}

// TestAttackAPI: items 1, 2, 7, 8, 9, 12 and 13 (and R24's hooks and
// backend annotations) with containerd's Go client in the env's namespace:
// spec fields neither CRI nor ctr's flags produce.
func TestAttackAPI(t *testing.T) {
	env := startEnv(t, true)
	ns := env.Namespace

	for _, tc := range []struct {
		item, name string
		opts       []oci.SpecOpts
		want       []string
	}{
		{"1", "device rule allowing every block device", []oci.SpecOpts{withSpec(func(s *specs.Spec) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Access: "rw"})
		})}, []string{`linux.resources.devices "allow b *:* rw" is not allowed (allows a device); allowed: allow rules for ` + strings.TrimPrefix(devicesText, "allowed: ")}},
		{"1", "/dev/kvm under the name /dev/null", []oci.SpecOpts{withSpec(func(s *specs.Spec) {
			s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/null", Type: "c", Major: 10, Minor: 232})
		})}, []string{`linux.devices "/dev/null c 10:232" is not allowed`}},
		{"7", "cgroupfs read-write", []oci.SpecOpts{oci.WithMounts([]specs.Mount{{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "rw"}}})},
			[]string{`mount /sys/fs/cgroup "cgroup nosuid,noexec,nodev,rw" is not allowed (cgroupfs only read-only at /sys/fs/cgroup)`}},
		{"7", "root.path a host directory", []oci.SpecOpts{oci.WithRootFSPath("/")},
			[]string{`root.path "/" is not allowed; allowed: "rootfs": the container's snapshot, mounted in its bundle`}},
		{"24", "hooks from a tenant", []oci.SpecOpts{withSpec(func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "touch /tmp/pwned"}}}}
		})}, []string{`hooks "`, "is not allowed"}},
		{"8", "a user namespace with host mappings", []oci.SpecOpts{oci.WithUserNamespace([]specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}})},
			[]string{`linux.uidMappings "[{\"containerID\":0,\"hostID\":0,\"size\":65536}]" is not allowed`}},
		{"8", "a user namespace", []oci.SpecOpts{withSpec(func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		})}, []string{`linux.namespaces "user" is not allowed; allowed: pid, network, ipc, uts, mount and cgroup namespaces`}},
		{"8", "the host's uts namespace (entry left out)", []oci.SpecOpts{oci.WithHostNamespace(specs.UTSNamespace)},
			[]string{`linux.namespaces.uts "host" is not allowed (host uts namespace); allowed: a pod-private uts namespace`}},
		{"13", "every capability for the container on runc", []oci.SpecOpts{oci.WithCapabilities(allCaps)},
			[]string{`process.capabilities "CAP_`, hostRootText}},
		{"24", "a Kata hypervisor annotation", []oci.SpecOpts{oci.WithAnnotations(map[string]string{"io.katacontainers.config.hypervisor.path": "/tmp/evil"})},
			[]string{`annotation "io.katacontainers.config.hypervisor.path" is not allowed`}},
	} {
		t.Run(tc.item+": "+tc.name, func(t *testing.T) {
			apiRefused(t, env, ns, "api-"+tc.item, tc.want, tc.opts...)
			assertClean(t, env)
		})
	}

	t.Run("2: no masked or read-only paths", func(t *testing.T) {
		a, err := apiCreate(t, env, ns, "unmasked", oci.WithMaskedPaths(nil), oci.WithReadonlyPaths(nil),
			oci.WithProcessArgs("sh", "-c", "exec 2>&1; grep ' /proc/sys ' /proc/mounts; cat /proc/sys/kernel/panic > /proc/sys/kernel/panic; echo rc=$?; wc -c < /proc/timer_list"))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := a.run(t)
		if !strings.Contains(out, "/proc/sys proc ro,") || !strings.Contains(out, "Read-only file system") || strings.Contains(out, "rc=0") || !strings.HasSuffix(out, "\n0\n") {
			t.Errorf("/proc/sys writable or /proc/timer_list unmasked:\n%s", out)
		}
		a.remove()
		assertClean(t, env)
	})

	t.Run("12: a rootfs that is not a block device", func(t *testing.T) {
		dir := filepath.Join(env.Dir, "plain-rootfs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		a, err := apiCreateWith(t, env, ns, "plainroot", []client.NewTaskOpts{client.WithRootFS([]mount.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", "rw"}}})})
		if err == nil {
			a.remove()
		}
		wantRefused(t, "NewTask with a bind-mounted rootfs", err, `container "plainroot": rootfs is not a block device`,
			"allowed: a block-device rootfs from the devmapper or blockfile snapshotter (R7, R8)")
		assertClean(t, env)
	})

	t.Run("9: exec widening the container's capabilities", func(t *testing.T) {
		a, err := apiCreate(t, env, ns, "exec-caps", oci.WithProcessArgs("sh", "-c", "while :; do sleep 1; done"))
		if err != nil {
			t.Fatal(err)
		}
		a.start(t)
		if out, code, err := a.exec(t, "same", []string{"sh", "-c", "grep CapEff /proc/self/status"}, nil); err != nil || code != 0 {
			t.Fatalf("exec with the container's own process: %q %d %v", out, code, err)
		}
		for _, x := range []struct {
			name string
			mut  func(*specs.Process)
			want []string
		}{
			{"every capability", func(p *specs.Process) {
				p.Capabilities = &specs.LinuxCapabilities{Bounding: allCaps, Effective: allCaps, Permitted: allCaps}
			}, []string{`process.capabilities "CAP_`, hostRootText}},
			{"one the container lacks", func(p *specs.Process) {
				c := p.Capabilities
				c.Bounding, c.Effective, c.Permitted = append(c.Bounding, "CAP_NET_ADMIN"), append(c.Effective, "CAP_NET_ADMIN"), append(c.Permitted, "CAP_NET_ADMIN")
			}, []string{`exec process.capabilities.bounding "CAP_NET_ADMIN" is not allowed (wider than the container's); allowed: the container's bounding capabilities: CAP_CHOWN`}},
			{"ambient", func(p *specs.Process) { p.Capabilities.Ambient = []string{"CAP_NET_RAW"} },
				[]string{`exec process.capabilities.ambient "CAP_NET_RAW" is not allowed (wider than the container's); allowed: the container's ambient capabilities: (none)`}},
			{"apparmor unconfined", func(p *specs.Process) { p.ApparmorProfile = "unconfined" },
				[]string{`process.apparmorProfile "unconfined" is not allowed`}},
		} {
			out, _, err := a.exec(t, "x-"+strings.ReplaceAll(x.name, " ", "-"), []string{"sh", "-c", "grep CapEff /proc/self/status"}, x.mut)
			wantRefused(t, "Exec with "+x.name, err, x.want...)
			if out != "" {
				t.Errorf("exec with %s ran: %q", x.name, out)
			}
		}
		a.remove()
		assertClean(t, env)
	})
}

// allCaps is every capability a process could ask for.
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN",
	"CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// criID is a fresh id of the form containerd's CRI gives containers.
func criID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// claimPod is a spec option that gives a container the CRI annotations of
// an app container of pod p, as containerd's CRI writes them; name is the
// container's name.
func claimPod(p *criPod, name string) oci.SpecOpts {
	return oci.WithAnnotations(map[string]string{
		"io.kubernetes.cri.container-type":    "container",
		"io.kubernetes.cri.sandbox-id":        p.id,
		"io.kubernetes.cri.sandbox-name":      p.cfg.Metadata.Name,
		"io.kubernetes.cri.sandbox-namespace": p.cfg.Metadata.Namespace,
		"io.kubernetes.cri.sandbox-uid":       p.cfg.Metadata.Uid,
		"io.kubernetes.cri.container-name":    name,
	})
}

// TestAttackAPIInCRINamespace: items 5, 8 and 10 with the Go client in
// CRI's namespace, where a container claims a CRI pod with its exact
// identity (the sandbox id, name, namespace and UID CRI recorded) and then
// reaches for another pod or the host.
func TestAttackAPIInCRINamespace(t *testing.T) {
	env := startEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cri := e2eenv.CRINamespace

	mine := runPodT(ctx, t, env, podConfig(env, "mine", nil))
	other := runPodT(ctx, t, env, podConfig(env, "other", nil))
	victimCfg := sleeper(env, "victim")
	victimCfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}
	victim := other.mustStart(ctx, t, victimCfg)
	victimPid := criPid(ctx, t, other, victim)
	victimCg := hostCgroup(t, victimPid, "memory")
	victimLimit, err := os.ReadFile("/sys/fs/cgroup/memory" + victimCg + "/memory.limit_in_bytes")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("8: the host network through /proc/2", func(t *testing.T) {
		apiRefused(t, env, cri, criID(t), []string{`linux.namespaces.network "/proc/2/ns/net" is not allowed (host network namespace); allowed: a pod-private network namespace`},
			claimPod(mine, "hostnet"), oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/2/ns/net"}))
	})
	t.Run("8: another pod's pid namespace", func(t *testing.T) {
		path := fmt.Sprintf("/proc/%d/ns/pid", victimPid)
		apiRefused(t, env, cri, criID(t), []string{`linux.namespaces.pid "` + path + `" is not allowed (not a namespace of this pod's sandbox); allowed: a new pid namespace, or one of this pod's own`},
			claimPod(mine, "peek"), oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: path}))
	})
	t.Run("10: another pod's identity with this pod's sandbox id", func(t *testing.T) {
		forged := *mine
		forged.cfg = podConfig(env, "other", nil) // other's name and UID
		apiRefused(t, env, cri, criID(t), []string{`annotation io.kubernetes.cri.sandbox-id "` + mine.id + `" is not allowed (the container's pod identity differs from the one its sandbox recorded)`},
			claimPod(&forged, "forged"))
	})
	t.Run("5: cgroupsPath of another pod's container", func(t *testing.T) {
		id := criID(t)
		a, err := apiCreate(t, env, cri, id, claimPod(mine, "cgthief"), oci.WithCgroup(victimCg), oci.WithMemoryLimit(16<<30),
			oci.WithProcessArgs("sh", "-c", "while :; do sleep 1; done"))
		if err != nil {
			t.Fatal(err)
		}
		a.start(t)
		if got, want := hostCgroup(t, int(a.task.Pid()), "memory"), "/cci-shim/"+cri+"/pod-"+mine.id+"/"+id; got != want {
			t.Errorf("the container asked for %s and is in %s, want %s", victimCg, got, want)
		}
		if b, err := os.ReadFile("/sys/fs/cgroup/memory" + victimCg + "/memory.limit_in_bytes"); err != nil || string(b) != string(victimLimit) {
			t.Errorf("the victim's memory limit changed from %q to %q (%v)", victimLimit, b, err)
		}
		a.remove()
	})
	mine.remove(ctx, t)
	other.remove(ctx, t)
	assertClean(t, env)
}

// criPid is the host pid of a CRI container's init process.
func criPid(ctx context.Context, t *testing.T, p *criPod, id string) int {
	t.Helper()
	c, err := p.env.Client().LoadContainer(namespaces.WithNamespace(ctx, e2eenv.CRINamespace), id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task(namespaces.WithNamespace(ctx, e2eenv.CRINamespace), nil)
	if err != nil {
		t.Fatal(err)
	}
	return int(task.Pid())
}
