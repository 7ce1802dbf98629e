package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// gvisorBackendOrSkip returns the gvisor backend, failing under CI=true when
// it cannot run here and skipping otherwise.
func gvisorBackendOrSkip(t *testing.T) testBackend {
	t.Helper()
	for _, b := range testBackends(t) {
		if b.isGVisor() {
			if b.note != "" {
				t.Logf("backend gvisor: %s", b.note)
			}
			return b
		}
	}
	t.Skipf("gvisor backend unavailable and CI unset: %s", backendsErr)
	return testBackend{}
}

// TestGVisorCRIPod: a two-container CRI pod runs in one gVisor sandbox (R1):
// one runsc-sandbox process for the pod, both containers see gVisor's
// kernel, ExecSync works, a container that exits is seen to exit while its
// sibling runs on, and nothing is left after the pod is removed.
func TestGVisorCRIPod(t *testing.T) {
	b := gvisorBackendOrSkip(t)
	env := b.startEnv(t, true, noBurst) // the limits from the first byte, to read them
	// (iothrottle's TestWatchBurstLoopDevice and `ccibench burst` show them
	// arrive once the burst is spent.)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	p := mustRunPod(ctx, t, env, podConfig(env, "gvisor-pod", nil))
	app := p.mustStart(ctx, t, sleeper(env, "app"))
	side := p.mustStart(ctx, t, sleeper(env, "sidecar"))
	for _, id := range []string{app, side} {
		if out := p.exec(ctx, t, id, "dmesg | head -1"); !strings.Contains(out, "Starting gVisor") {
			t.Errorf("container %s does not run on gVisor's kernel: dmesg says %q", id, out)
		}
	}
	sandboxes := env.RunscPIDs("runsc-sandbox")
	if len(sandboxes) != 1 {
		t.Errorf("runsc-sandbox processes for one pod: %v, want exactly one", sandboxes)
	} else if cgroupV1() {
		// R8: the sentry and every container's gofer are in the sandbox's
		// cgroup, which holds every container's rootfs limit.
		cg := blkioCgroup(t, sandboxes[0])
		for _, g := range env.RunscPIDs("runsc-gofer") {
			if got := blkioCgroup(t, g); got != cg {
				t.Errorf("gofer %d is in blkio cgroup %s, the sandbox in %s", g, got, cg)
			}
		}
		limits, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/blkio", cg, "blkio.throttle.write_bps_device"))
		if n := strings.Count(string(limits), " 6000000\n"); n != 3 {
			t.Errorf("the sandbox's cgroup %s limits %d devices, want 3 (pause, app, sidecar):\n%s", cg, n, limits)
		}
	}
	// The files CRI binds into each container (/etc/hosts) are served from
	// the containers' own mounts: the shim's pins of them have left the
	// host's mount table once the containers started.
	for _, id := range []string{app, side} {
		if out := p.exec(ctx, t, id, "cat /etc/hosts"); !strings.Contains(out, "localhost") {
			t.Errorf("container %s reads /etc/hosts as %q", id, out)
		}
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), " "+filepath.Join(env.StateDir, e2eenv.CRINamespace, p.id, "pins")) {
		t.Error("the started containers' pins are still mounted on the host")
	}
	// Both containers share the sandbox's kernel: a file in the pod's
	// /dev/shm written by one is read by the other.
	p.exec(ctx, t, app, "echo shared > /dev/shm/x")
	if out := p.exec(ctx, t, side, "cat /dev/shm/x"); out != "shared\n" {
		t.Errorf("sidecar reads %q from the pod's /dev/shm", out)
	}

	// A container that exits on its own is seen to exit, with its status.
	quitter := p.mustStart(ctx, t, containerConfig(env, "quitter", "echo bye; exit 7"))
	var st *runtimeapi.ContainerStatusResponse
	exited := waitFor(30*time.Second, func() bool {
		var err error
		st, err = p.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: quitter})
		return err == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	if !exited {
		t.Errorf("a container that exited is not seen as exited after 30 s: %v", st.GetStatus())
	} else if st.Status.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", st.Status.ExitCode)
	}
	if out := p.exec(ctx, t, app, "echo still-here"); out != "still-here\n" {
		t.Errorf("sibling after the exit: %q", out)
	}
	p.remove(ctx, t)
	assertClean(t, env)
}

// TestGVisorNetwork: a CRI pod in gVisor gets its CNI address on the
// sandbox's network stack (runsc --network=sandbox) and is reachable from
// the host's network namespace over the env's bridge.
func TestGVisorNetwork(t *testing.T) {
	b := gvisorBackendOrSkip(t)
	if b.noNetwork {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true needs a runsc that can use a pod network namespace here (scripts/deps.sh builds one): %s", b.note)
		}
		t.Skipf("CI unset and %s", b.note)
	}
	env := b.startEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	p := mustRunPod(ctx, t, env, podConfig(env, "gvisor-net", nil))
	st, err := p.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id})
	if err != nil {
		t.Fatal(err)
	}
	ip := st.GetStatus().GetNetwork().GetIp()
	if !strings.HasPrefix(ip, strings.TrimSuffix(env.PodSubnet, "0/24")) {
		t.Fatalf("pod IP %q is not in the env's CNI subnet %s", ip, env.PodSubnet)
	}
	// The env's bridge has no host address (no gateway): give the host
	// one on it, as a node's bridge plugin with isGateway would. The
	// bridge goes at teardown, and the address with it.
	hostAddr := strings.TrimSuffix(env.PodSubnet, "0/24") + "254/24"
	if out, err := exec.Command("ip", "addr", "add", hostAddr, "dev", env.BridgeName).CombinedOutput(); err != nil {
		t.Fatalf("ip addr add %s dev %s: %v: %s", hostAddr, env.BridgeName, err, out)
	}
	id := p.mustStart(ctx, t, containerConfig(env, "server", "while :; do nc -l -p 8080 -e echo hello-from-gvisor; done"))
	if out := p.exec(ctx, t, id, "ip -4 addr"); !strings.Contains(out, "inet "+ip+"/") {
		t.Errorf("the sandbox's interfaces do not carry the pod IP %s:\n%s", ip, out)
	}
	var got string
	if !waitFor(30*time.Second, func() bool {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 2*time.Second)
		if err != nil {
			return false
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		data, _ := io.ReadAll(conn)
		got = string(data)
		return strings.Contains(got, "hello-from-gvisor")
	}) {
		t.Errorf("TCP from the host to %s:8080 in the pod: got %q, want hello-from-gvisor", ip, got)
	} else {
		t.Logf("pod %s reachable from the host at %s:8080 through gVisor's network stack", p.id[:12], ip)
	}
	p.remove(ctx, t)
	assertClean(t, env)
}

// gvisorRootDevice checks R7 under gVisor. The sandbox's kernel sees its
// root through the gofer ("none / 9p" in /proc/mounts), so the block device
// is checked where it is mounted, on the host: the container's bundle
// rootfs is a /dev/loopN ext4 mount (with the sync options the R8 throttle
// needs on cgroup v1), 20 GiB as the container sees it, and what the
// container writes is on that device.
func gvisorRootDevice(t *testing.T, env *e2eenv.Env) {
	const id = "rootfs-gvisor"
	if _, errOut, err := env.CtrRun("-d", "--runtime", cciRuntime, env.Image, id, "sh", "-c", "echo on-the-device > /marker; sleep 600"); err != nil {
		t.Fatalf("run: %v: %s", err, errOut)
	}
	defer func() {
		env.Ctr("task", "kill", "-s", "SIGKILL", id)
		waitFor(10*time.Second, func() bool {
			out, _, _ := env.Ctr("task", "ls")
			return !strings.Contains(out, id+" ") || strings.Contains(out, "STOPPED")
		})
		env.Ctr("task", "rm", "-f", id)
		env.Ctr("container", "rm", id)
	}()
	var m hostMount
	if !waitFor(10*time.Second, func() bool { m = bundleRootfsMount(env, id); return m.source != "" }) {
		t.Fatalf("no host mount of %s's bundle rootfs under %s", id, env.StateDir)
	}
	if !strings.HasPrefix(m.source, "/dev/loop") || m.fsType != "ext4" {
		t.Errorf("the sandbox's rootfs on the host is %s (%s), want a /dev/loopN ext4 mount", m.source, m.fsType)
	}
	if cgroupV1() && !strings.Contains(","+m.superOptions+",", ",sync,") {
		t.Errorf("rootfs %s mounted %q on cgroup v1: without sync, gVisor's writes escape the blkio throttle (R8)", m.source, m.superOptions)
	}
	var marker []byte
	if !waitFor(10*time.Second, func() bool {
		marker, _ = os.ReadFile(filepath.Join(m.target, "marker"))
		return string(marker) == "on-the-device\n"
	}) {
		t.Errorf("the container's /marker is not on %s: %q", m.source, marker)
	}
	out, _, err := env.Ctr("task", "exec", "--exec-id", "df", id, "df", "-k", "/")
	if err != nil {
		t.Fatalf("exec df: %v", err)
	}
	fields := strings.Fields(lastLine(out))
	kb, _ := strconv.ParseInt(fields[1], 10, 64)
	if kb < 19<<20 || kb > 20<<20 {
		t.Errorf("root size %d KiB, want about 20 GiB:\n%s", kb, out)
	}
	t.Logf("container root: %s (%s, %s) on the host, %d KiB in the sandbox", m.source, m.fsType, m.superOptions, kb)
}

// bundleLimits returns, in the order of the policy test's cgroup script
// (cfs quota, period, shares, memory limit, oom_score_adj), the resources in
// the spec the cci shim gave the backend for container id of pod.
func bundleLimits(t *testing.T, env *e2eenv.Env, pod, id string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(env.StateDir, e2eenv.CRINamespace, pod, "bundles", id, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	r := spec.Linux.Resources
	if r == nil || r.CPU == nil || r.Memory == nil || r.CPU.Quota == nil || r.CPU.Period == nil || r.CPU.Shares == nil || r.Memory.Limit == nil || spec.Process.OOMScoreAdj == nil {
		t.Fatalf("backend spec of %s lacks cpu/memory limits or oomScoreAdj: %s", id, data)
	}
	return fmt.Sprintf("%d\n%d\n%d\n%d\n%d\n", *r.CPU.Quota, *r.CPU.Period, *r.CPU.Shares, *r.Memory.Limit, *spec.Process.OOMScoreAdj)
}

// hostMount is one line of /proc/self/mountinfo.
type hostMount struct{ target, fsType, source, superOptions string }

// bundleRootfsMount finds the host mount of container id's backend bundle
// rootfs, which the runc shim mounted for runsc's gofer.
func bundleRootfsMount(env *e2eenv.Env, id string) hostMount {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		if strings.HasPrefix(f[4], env.StateDir+"/") && strings.HasSuffix(f[4], "/bundles/"+id+"/rootfs") {
			return hostMount{target: f[4], fsType: g[0], source: g[1], superOptions: g[2]}
		}
	}
	return hostMount{}
}

// blkioCgroup is the blkio cgroup of pid (cgroup v1).
func blkioCgroup(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[1] == "blkio" {
			return f[2]
		}
	}
	t.Fatalf("pid %d has no blkio cgroup:\n%s", pid, data)
	return ""
}

func cgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err != nil
}
