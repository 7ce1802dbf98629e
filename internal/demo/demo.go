// Package demo is the main job of `make run`: it starts a local containerd
// v2 with the cci runtime (runc backend, blockfile rootfs), runs demo pods
// through crictl and ctr, the clients operators use, and shows each platform
// rule (the README's rules table) as the pod sees it. It is a showcase, not
// a test: the end-to-end tests under tests/ assert what it shows.
package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cci-shim/cci-shim/internal/crictl"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

const runtime = "io.containerd.cci.v2"

// nodeConfig is what the demo node's cci config adds to the env's (runc
// backend, paths in the env): a fake GPU inventory (no GPU here) with a
// driver dir. The limits are the node defaults.
const nodeConfig = `gpu.inventory = "fake"
gpu.fake_fixture = "{{Dir}}/gpus.json"
gpu.root = "{{Dir}}/gpuroot"
[gpu.drivers."470.82.01"]
lib_dir = "{{Dir}}/driver/lib"
bin_dir = "{{Dir}}/driver/bin"
`

const gpuFixture = `{"driverVersion": "470.82.01", "cudaVersion": "11.4", "devices": [
 {"index": 0, "minor": 0, "uuid": "GPU-db9de900-04b3-41c1-1ece-f110c6b9f453", "model": "Tesla T4", "memoryMiB": 15360, "pciBusId": "00000000:00:1B.0"},
 {"index": 1, "minor": 1, "uuid": "GPU-c0999c5e-6d00-84f3-82f2-233595f5664e", "model": "Tesla T4", "memoryMiB": 15360, "pciBusId": "00000000:00:1C.0"}]}`

type demo struct {
	p      e2eenv.TB
	env    *e2eenv.Env
	cri    *crictl.Client
	n      int
	gvisor bool // the pods run in gVisor sandboxes
}

// Run runs the demo; p's cleanups tear everything down, also when the run
// stops early (a failure, or an interrupt: see package interrupt).
//
// backend is "gvisor", "runc" or "" (gvisor where runsc is installed, else
// runc, said plainly).
func Run(p e2eenv.TB, backend string) {
	d := &demo{p: p}
	opts := e2eenv.Options{NodeConfig: nodeConfig, CRI: true, LogLevel: "info"}
	switch g, err := e2eenv.FindGVisor(""); {
	case backend == "runc":
		p.Logf("== cci-shim demo: containerd v2 + containerd-shim-cci-v2, runc backend (shares the host kernel: development only), blockfile rootfs")
	case err != nil && backend == "gvisor":
		p.Fatalf("gvisor backend: %v", err)
	case err != nil:
		p.Logf("== cci-shim demo: containerd v2 + containerd-shim-cci-v2, blockfile rootfs")
		p.Logf("   NOTE: no gVisor here (%v): falling back to the runc backend, which shares the host kernel (development only)", err)
	default:
		d.gvisor = true
		opts.Backend = g.Backend
		p.Logf("== cci-shim demo: containerd v2 + containerd-shim-cci-v2, gvisor backend (a user-space kernel per pod: %s), blockfile rootfs", g.Note)
	}
	d.env = e2eenv.Start(p, opts)
	bin, err := crictl.Find(d.env.ToolsDir)
	if err != nil {
		p.Fatalf("%v", err)
	}
	if d.cri, err = crictl.New(bin, d.env.Address, d.env.Dir); err != nil {
		p.Fatalf("%v", err)
	}
	d.prepareGPUNode()

	d.section("R1 R2 R22", "one pod = one cci shim process serving the pod (crictl, RuntimeClass handler cci, two containers)")
	sb, _ := d.criPod()
	d.shims()
	if d.gvisor {
		d.p.Logf("   the pod's kernel is gVisor's, one sandbox for both containers:")
		d.exec(sb, "app", "dmesg | head -2")
	}

	d.section("R7", "the pod's root filesystem is its own 20 GiB block device")
	d.exec(sb, "app", "grep ' / ' /proc/mounts; df -h / | tail -1")

	d.section("R5", "pod size normalised from what CRI sends: app has limits 300m CPU / 700Mi, gets a valid size (0.5 core, 1 GiB)")
	if d.gvisor {
		// gVisor enforces a pod's limits on the sandbox's host cgroup, which
		// holds the sentry and every container's gofer.
		d.sandboxLimits()
	} else {
		d.exec(sb, "app", "echo cfs_quota_us=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) cfs_period_us=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us) memory.limit_in_bytes=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)")
	}

	if d.gvisor {
		d.section("R9", "a sysctl outside the allow-list refuses the pod; so does an allowed one gVisor's kernel would not apply (never a silent no-op)")
		d.refusedPod("net.core.somaxconn", map[string]string{"net.core.somaxconn": "1024"})
	} else {
		d.section("R9", "allowed pod sysctl applied; a sysctl outside the allow-list refuses the pod")
		d.exec(sb, "app", "sysctl net.core.somaxconn")
	}
	d.refusedPod("kernel.panic", map[string]string{"kernel.panic": "10"})

	d.section("R10", "/dev/shm is a tmpfs of the requested size (annotation shm.cci.io/size=128Mi)")
	d.exec(sb, "app", "df -h /dev/shm | tail -1")

	d.section("R3, R25", "privileged and host-network containers are refused; SYS_ADMIN is allowed in a sandbox (gVisor, Kata) and refused where the container shares the host kernel (runc)")
	d.ctrRun("privileged", "--privileged")
	d.ctrRun("host-network", "--net-host")
	if d.gvisor {
		// In gVisor CAP_SYS_ADMIN is the sandbox's, not the host's.
		d.ctrRun("sys-admin", "--cap-add", "CAP_SYS_ADMIN", "--", "sh", "-c", "grep CapEff /proc/self/status; mount -t tmpfs -o size=8m tmpfs /mnt && df -h /mnt | tail -1")
	} else {
		d.ctrRun("sys-admin", "--cap-add", "CAP_SYS_ADMIN", "--", "sh", "-c", "mount -o remount,size=32m /dev/shm && df -h /dev/shm | tail -1")
	}

	d.section("R4", "hostPath: refused unless coordinator.cci.io/hostpath-replacement replaces it")
	host := filepath.Join(d.env.Dir, "host-data")
	os.MkdirAll(host, 0o755)
	mount := "type=bind,src=" + host + ",dst=/data,options=rbind:rw"
	d.ctrRun("hostpath", "--mount", mount)
	d.ctrRun("hostpath-replaced", "--mount", mount, "--annotation",
		`coordinator.cci.io/hostpath-replacement=[{"name":"*","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"256Mi","medium":"Memory"}}]`,
		"--", "sh", "-c", "ls -A /data | wc -l; df -h /data | tail -1")

	d.section("R8", "rootfs at full speed for a start burst (1 GB), then throttled to 6 MB/s; the pod may lower the burst (18 MB, direct I/O, dd inside the container)")
	const ddProbe = `s=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero of=/probe bs=1M count=18 oflag=direct 2>/dev/null || exit 1
e=$(cut -d' ' -f1 /proc/uptime); awk -v s=$s -v e=$e 'BEGIN { printf "wrote 18874368 bytes with O_DIRECT in %.2f s: %.2f MB/s (MB = 10^6 bytes)\n", e-s, 18.874368/(e-s) }'`
	d.ctrRun("rootfs-burst", "--", "sh", "-c", ddProbe)
	d.ctrRun("rootfs-no-burst", "--annotation", "throttle.cci.io/rootfs-burst-bytes=0", "--", "sh", "-c", ddProbe)

	d.section("R14", "stdout forwarded losslessly at 1 MB/s: 3 MB take about 3 s")
	start := time.Now()
	out, _, err := d.env.CtrRun("--rm", "--runtime", runtime, d.env.Image, d.id("stdout"), "sh", "-c", "head -c 3000000 /dev/zero")
	d.p.Logf("   received %d bytes in %.2f s (%v)", len(out), time.Since(start).Seconds(), errText(err))

	d.section("R12", "GPU pod (fake T4 inventory): driver libraries and env in the process and in exec")
	if d.gvisor {
		// The fake inventory has device nodes but no driver; gVisor's nvproxy
		// forwards to a real one.
		d.p.Logf("   not shown on gVisor: GPUs go through gVisor's nvproxy (backend.gvisor.nvproxy), which needs the NVIDIA driver; ccidemo --backend runc shows the fake inventory")
	} else {
		d.gpuPod()
	}

	d.section("R15-R17", "log files declared by the pod are collected, across rotation, exactly once")
	d.logs(sb)

	d.section("end", "stop and remove everything")
	d.p.Logf("   $ crictl stopp %s && crictl rmp %s", sb[:12], sb[:12])
	if err := d.cri.RemovePod(sb); err != nil {
		d.p.Errorf("%v", err)
	}
	d.sinkSummary(sb)
	if leaks := d.env.WaitNoLeaks(10 * time.Second); len(leaks) > 0 {
		d.p.Errorf("left behind: %v", leaks)
	} else {
		d.p.Logf("   no shim, container, mount, loop device or socket left behind")
	}
}

func (d *demo) section(rule, title string) { d.p.Logf("\n-- %s: %s", rule, title) }

func (d *demo) id(name string) string {
	d.n++
	return fmt.Sprintf("demo-%s-%d", name, d.n)
}

// ctrRun runs a throwaway container through ctr and prints its output or
// the refusal.
func (d *demo) ctrRun(name string, args ...string) {
	cmd := []string{"sh", "-c", "echo started"}
	for i, a := range args {
		if a == "--" {
			cmd, args = args[i+1:], args[:i]
			break
		}
	}
	full := append(append([]string{"--rm", "--runtime", runtime}, args...), d.env.Image, d.id(name))
	out, errOut, err := d.env.CtrRun(append(full, cmd...)...)
	d.p.Logf("   $ ctr run %s ...", strings.Join(args, " "))
	if err != nil {
		d.p.Logf("   refused: %s", lastErrLine(errOut))
		d.env.Ctr("container", "rm", d.id(name))
		return
	}
	d.p.Logf("%s", indent(out))
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func lastErrLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], "level=warning") {
			return strings.TrimPrefix(lines[i], "ctr: ")
		}
	}
	return s
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "   | " + strings.ReplaceAll(s, "\n", "\n   | ")
}
