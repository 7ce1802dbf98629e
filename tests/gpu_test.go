package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/cci-shim/cci-shim/internal/testutil"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// gpuImage holds cudacheck and the glibc it needs; busybox-static has no loader.
const gpuImage = "localhost/cci/glibc-cuda:test"

// gpuDriver is the fake driver version of the node: the fixture's and the one
// [gpu.drivers] entry.
const gpuDriver = "535.104.05"

// gpuNodeConfig makes the node a fake two-T4 node whose driver directories
// hold a real libcuda.so.1 (placeholders filled by fmt: fixture, root, lib_dir,
// bin_dir).
const gpuNodeConfig = `gpu.inventory = "fake"
gpu.fake_fixture = %q
gpu.root = %q
[gpu.drivers."` + gpuDriver + `"]
lib_dir = %q
bin_dir = %q
`

const gpuFixture = `{"driverVersion": "` + gpuDriver + `", "cudaVersion": "12.2", "devices": [
 {"index": 0, "minor": 0, "uuid": "GPU-db9de900-04b3-41c1-1ece-f110c6b9f453", "model": "Tesla T4", "memoryMiB": 15360, "pciBusId": "00000000:00:1B.0"},
 {"index": 1, "minor": 1, "uuid": "GPU-c0999c5e-6d00-84f3-82f2-233595f5664e", "model": "Tesla T4", "memoryMiB": 15360, "pciBusId": "00000000:00:1C.0"}]}
`

// procDevices is the fake host's /proc/devices: ApplyRunc reads nvidia-uvm's major.
const procDevices = "Character devices:\n  1 mem\n195 nvidia-frontend\n508 nvidia-uvm\n509 nvidia-caps\n\nBlock devices:\n  7 loop\n"

const libcudaC = `
int cuInit(unsigned int flags) { (void)flags; return 0; }
const char *cciFakeDriver(void) { return "fake libcuda ` + gpuDriver + `"; }
`

// cudacheckC loads libcuda.so.1 by name, so only LD_LIBRARY_PATH can find it.
const cudacheckC = `
#include <dlfcn.h>
#include <stdio.h>
int main(void) {
	void *h = dlopen("libcuda.so.1", RTLD_NOW);
	if (!h) { printf("cudacheck: FAIL %s\n", dlerror()); return 1; }
	int (*cuInit)(unsigned int) = (int (*)(unsigned int))dlsym(h, "cuInit");
	const char *(*name)(void) = (const char *(*)(void))dlsym(h, "cciFakeDriver");
	if (!cuInit || !name) { printf("cudacheck: FAIL %s\n", dlerror()); return 1; }
	int rc = cuInit(0);
	if (rc != 0) { printf("cudacheck: FAIL cuInit returned %d\n", rc); return 1; }
	printf("cudacheck: OK cuInit=0 %s\n", name());
	return 0;
}
`

// gpuProbe prints what a process sees of R12 as key=value lines.
const gpuProbe = `cudacheck; echo "cudacheck=$?"
echo "ld=$LD_LIBRARY_PATH"
echo "path=$PATH"
echo "smi=$(nvidia-smi 2>&1)"
echo "devs=$(ls /dev | grep nvidia | tr '\n' ' ')"
if [ -e /usr/local/nvidia ]; then echo mounted=yes; else echo mounted=no; fi
if touch /usr/local/nvidia/lib64/x 2>/dev/null; then echo readonly=no; else echo readonly=yes; fi
`

const (
	nvLib  = "/usr/local/nvidia/lib64"
	nvBin  = "/usr/local/nvidia/bin"
	imgEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// TestGPU drives R12/R13 end to end with the runc backend and a fake node:
// two T4s, a driver directory with a real libcuda.so.1, and a glibc image
// whose cudacheck dlopens it by name.
func TestGPU(t *testing.T) { forEachBackend(t, testGPU) }

func testGPU(t *testing.T, b testBackend) {
	if _, err := exec.LookPath("gcc"); err != nil {
		testutil.Unavailable(t, "gcc is needed to build libcuda.so.1 and cudacheck")
	}
	host := t.TempDir()
	libDir, binDir := filepath.Join(host, "driver/lib64"), filepath.Join(host, "driver/bin")
	root := filepath.Join(host, "root")
	for _, d := range []string{libDir, binDir, filepath.Join(root, "proc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(host, "libcuda.c"), libcudaC, 0o644)
	write(filepath.Join(host, "cudacheck.c"), cudacheckC, 0o644)
	write(filepath.Join(host, "fixture.json"), gpuFixture, 0o644)
	write(filepath.Join(root, "proc/devices"), procDevices, 0o644)
	write(filepath.Join(binDir, "nvidia-smi"), "#!/bin/sh\necho \"NVIDIA-SMI "+gpuDriver+" (cci fake)\"\n", 0o755)
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", filepath.Join(libDir, "libcuda.so.1"), filepath.Join(host, "libcuda.c")},
		{"-O2", "-o", filepath.Join(host, "cudacheck"), filepath.Join(host, "cudacheck.c")},
	} {
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	cfg := fmt.Sprintf(gpuNodeConfig, filepath.Join(host, "fixture.json"), root, libDir, binDir)
	env := b.startEnv(t, true, cfg)
	if err := env.ImportGlibcImage(gpuImage, map[string]string{"/usr/bin/cudacheck": filepath.Join(host, "cudacheck")}); err != nil {
		t.Fatalf("importing %s: %v", gpuImage, err)
	}
	requireFree := func(t *testing.T) {
		t.Helper()
		if got := gpuAllocations(t, env); len(got) != 0 {
			t.Errorf("ledger holds %v, want no allocation", got)
		}
	}

	if b.isGVisor() {
		// A GPU reaches a gVisor sandbox through nvproxy, which needs the
		// host's NVIDIA driver and is off on this node: a GPU pod is
		// refused, naming the backend, and its GPU goes back to the
		// ledger (R11 on gvisor cannot hold here).
		_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, "--annotation", "gpu.cci.io/count=1", gpuImage, "gpu-gvisor", "true")
		const want = "GPUs on the gvisor backend go through gVisor's nvproxy, which this node does not enable (backend.gvisor.nvproxy)"
		if err == nil || !strings.Contains(errOut, want) {
			t.Errorf("a GPU pod on gvisor without nvproxy: err %v, stderr %q; want an error containing %q", err, errOut, want)
		}
		t.Logf("tenant sees (ctr run): %s", ctrError(errOut))
		requireFree(t)
		env.Ctr("containers", "delete", "gpu-gvisor")
		assertNoLeaks(t, env)
		return
	}

	t.Run("main process finds libcuda without export", func(t *testing.T) {
		out, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, "--env", "NVIDIA_VISIBLE_DEVICES=0", gpuImage, "gpu-main", "sh", "-c", gpuProbe)
		if err != nil {
			t.Fatalf("run: %v: %s", err, errOut)
		}
		p := probeLines(out)
		t.Logf("main process: %s", p["cudacheck:"])
		wantGPU(t, p, nvLib, "nvidia0")
		requireFree(t)
	})

	t.Run("exec sessions and the user's LD_LIBRARY_PATH", func(t *testing.T) {
		main, execd := probeDetached(t, env, "gpu-exec", "--annotation", "gpu.cci.io/count=1", "--env", "LD_LIBRARY_PATH=/opt/lib")
		wantGPU(t, main, "/opt/lib:"+nvLib, "nvidia0")
		wantGPU(t, execd, "/opt/lib:"+nvLib, "nvidia0")
		if got := gpuAllocations(t, env); len(got[env.Namespace+"/gpu-exec"]) != 1 || len(got) != 1 {
			t.Errorf("ledger = %v, want one GPU for pod gpu-exec", got)
		}
		removeTask(t, env, "", "gpu-exec")
		if !waitFor(10*time.Second, func() bool { return len(gpuAllocations(t, env)) == 0 }) {
			t.Errorf("after the pod was deleted the ledger still holds %v", gpuAllocations(t, env))
		}
	})

	t.Run("no request, no gpu", func(t *testing.T) {
		main, execd := probeDetached(t, env, "no-gpu", "--env", "LD_LIBRARY_PATH=/opt/lib")
		for name, p := range map[string]map[string]string{"main": main, "exec": execd} {
			want := map[string]string{"cudacheck": "1", "ld": "/opt/lib", "path": imgEnv, "devs": "", "mounted": "no",
				"cudacheck:": "FAIL libcuda.so.1: cannot open shared object file: No such file or directory"}
			for k, v := range want {
				if p[k] != v {
					t.Errorf("%s: %s = %q, want %q", name, k, p[k], v)
				}
			}
		}
		removeTask(t, env, "", "no-gpu")
		requireFree(t)
	})

	t.Run("refusals allocate nothing", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			ann  []string
			want string
		}{
			{"too-many", []string{"gpu.cci.io/count=3"},
				`gpu.cci.io/count "3" asks for more GPUs than are free (node has 2, 2 free); allowed: at most 2 now`},
			{"old-driver", []string{"gpu.cci.io/count=1", "gpu.cci.io/driver-version=418.126"},
				`gpu.cci.io/driver-version "418.126" is not available on this node; allowed: ` + gpuDriver},
		} {
			args := []string{"--rm", "--runtime", cciRuntime}
			for _, a := range tt.ann {
				args = append(args, "--annotation", a)
			}
			_, errOut, err := env.CtrRun(append(args, gpuImage, tt.name, "true")...)
			if err == nil || !strings.Contains(errOut, tt.want) {
				t.Errorf("%s: err %v, stderr %q; want an error containing %q", tt.name, err, errOut, tt.want)
			}
			t.Logf("%s: %s", tt.name, strings.TrimSpace(errOut))
			requireFree(t)
			env.Ctr("containers", "delete", tt.name) // in case ctr run --rm left the container behind
		}
	})

	t.Run("CRI pod: ExecSync finds libcuda, delete frees the GPU", func(t *testing.T) {
		rs, _ := env.CRI()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		podCfg := &runtimeapi.PodSandboxConfig{
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: "gpu", Namespace: "default", Uid: podUID("gpu")},
			Annotations: map[string]string{"gpu.cci.io/count": "1"},
			Linux:       &runtimeapi.LinuxPodSandboxConfig{},
		}
		sb, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: criHandler})
		if err != nil {
			t.Fatalf("RunPodSandbox: %v", err)
		}
		cr, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: sb.PodSandboxId,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "cuda"},
				Image:    &runtimeapi.ImageSpec{Image: gpuImage},
				Command:  []string{"sleep", "600"},
			},
			SandboxConfig: podCfg,
		})
		if err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		if _, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
		ex, err := rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: cr.ContainerId, Cmd: []string{"sh", "-c", gpuProbe}, Timeout: 20})
		if err != nil {
			t.Fatalf("ExecSync: %v", err)
		}
		wantGPU(t, probeLines(string(ex.Stdout)), nvLib, "nvidia0")
		if got := gpuAllocations(t, env); len(got) != 1 || len(got["k8s.io/"+sb.PodSandboxId]) != 1 {
			t.Errorf("ledger = %v, want one GPU for pod %s", got, sb.PodSandboxId)
		}
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.PodSandboxId}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		if !waitFor(10*time.Second, func() bool { return len(gpuAllocations(t, env)) == 0 }) {
			t.Errorf("after RemovePodSandbox the ledger still holds %v", gpuAllocations(t, env))
		}

		podCfg.Metadata.Name, podCfg.Metadata.Uid = "gpu-too-many", podUID("gpu-too-many")
		podCfg.Annotations["gpu.cci.io/count"] = "3"
		_, err = rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: criHandler})
		const want = `gpu.cci.io/count "3" asks for more GPUs than are free (node has 2, 2 free); allowed: at most 2 now`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("RunPodSandbox with 3 GPUs: %v; want an error containing %q", err, want)
		}
		t.Logf("RunPodSandbox with 3 GPUs: %v", err)
		requireFree(t)
	})

	// Container ids are unique per containerd namespace only; the ledger is
	// node-wide, so a pod is more than its id.
	t.Run("same id in two namespaces gets two GPUs", func(t *testing.T) {
		devs := map[string]string{}
		for _, ns := range []string{env.Namespace, e2eenv.CRINamespace} {
			if _, errOut, err := env.CtrIn(ns, "run", "-d", "--snapshotter", e2eenv.Snapshotter, "--runtime", cciRuntime,
				"--annotation", "gpu.cci.io/count=1", gpuImage, "gpu-twin", "sleep", "600"); err != nil {
				t.Fatalf("run in %s: %v: %s", ns, err, errOut)
			}
			out, errOut, err := env.CtrIn(ns, "task", "exec", "--exec-id", "devs", "gpu-twin", "sh", "-c", "ls /dev | grep 'nvidia[0-9]'")
			if err != nil {
				t.Fatalf("exec in %s: %v: %s", ns, err, errOut)
			}
			devs[ns] = strings.TrimSpace(out)
		}
		alloc := gpuAllocations(t, env)
		if devs[env.Namespace] == devs[e2eenv.CRINamespace] || len(alloc) != 2 {
			t.Errorf("both pods named gpu-twin see %v; ledger %v: want two pods with a GPU each", devs, alloc)
		}
		removeTask(t, env, "", "gpu-twin")
		if got := gpuAllocations(t, env); len(got) == 0 {
			t.Errorf("deleting gpu-twin in %s freed the GPU that gpu-twin in %s still uses", env.Namespace, e2eenv.CRINamespace)
		}
		removeTask(t, env, e2eenv.CRINamespace, "gpu-twin")
	})
	requireFree(t)
	assertNoLeaks(t, env)
}

// probeDetached starts a container running gpuProbe as its main process and
// runs gpuProbe again in a `ctr task exec` session; it returns both results.
func probeDetached(t *testing.T, env *e2eenv.Env, id string, args ...string) (main, execd map[string]string) {
	t.Helper()
	run := append([]string{"-d", "--runtime", cciRuntime}, args...)
	run = append(run, gpuImage, id, "sh", "-c", "{\n"+gpuProbe+"} >/tmp/main.txt; mv /tmp/main.txt /tmp/main.done; exec sleep 600")
	if _, errOut, err := env.CtrRun(run...); err != nil {
		t.Fatalf("run %s: %v: %s", id, err, errOut)
	}
	var out string
	if !waitFor(10*time.Second, func() bool {
		out, _, _ = env.Ctr("task", "exec", "--exec-id", fmt.Sprintf("cat-%d", time.Now().UnixNano()), id, "cat", "/tmp/main.done")
		return strings.Contains(out, "cudacheck=")
	}) {
		t.Fatalf("%s: main process probe never finished", id)
	}
	main = probeLines(out)
	out, errOut, err := env.Ctr("task", "exec", "--exec-id", "probe", id, "sh", "-c", gpuProbe)
	if err != nil {
		t.Fatalf("exec in %s: %v: %s", id, err, errOut)
	}
	return main, probeLines(out)
}

// wantGPU checks a probe of a GPU process: cudacheck works, the variables and
// mounts of R12, the pod's device node.
func wantGPU(t *testing.T, p map[string]string, ld, dev string) {
	t.Helper()
	if p["cudacheck"] != "0" || !strings.HasPrefix(p["cudacheck:"], "OK cuInit=0 fake libcuda "+gpuDriver) {
		t.Errorf("cudacheck exited %q: %q", p["cudacheck"], p["cudacheck:"])
	}
	if p["ld"] != ld {
		t.Errorf("LD_LIBRARY_PATH = %q, want %q", p["ld"], ld)
	}
	if p["path"] != imgEnv+":"+nvBin {
		t.Errorf("PATH = %q, want %q", p["path"], imgEnv+":"+nvBin)
	}
	if !strings.Contains(p["smi"], "NVIDIA-SMI "+gpuDriver) {
		t.Errorf("nvidia-smi from PATH: %q", p["smi"])
	}
	got := strings.Fields(p["devs"])
	sort.Strings(got)
	want := []string{"nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", dev, "nvidiactl"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("/dev nodes %q, want %q", got, want)
	}
	if p["mounted"] != "yes" || p["readonly"] != "yes" {
		t.Errorf("driver dirs mounted %q, read-only %q; want yes, yes", p["mounted"], p["readonly"])
	}
}

// probeLines reads gpuProbe's output: key=value lines, and cudacheck's own
// line under "cudacheck:".
func probeLines(out string) map[string]string {
	p := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "cudacheck: "); ok {
			p["cudacheck:"] = rest
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	return p
}

// gpuAllocations is `cci-agent gpus --json` on the env's node config: pod → GPU UUIDs.
func gpuAllocations(t *testing.T, env *e2eenv.Env) map[string][]string {
	t.Helper()
	out, err := exec.Command(filepath.Join(env.BinDir, "cci-agent"), "--config", env.NodeConfigPath, "gpus", "--json").Output()
	if err != nil {
		t.Fatalf("cci-agent gpus: %v", err)
	}
	var rep struct {
		Allocations []struct {
			PodID   string `json:"podId"`
			Devices []struct {
				UUID string `json:"uuid"`
			} `json:"devices"`
		} `json:"allocations"`
		GPUs []struct {
			UUID string `json:"uuid"`
			Pod  string `json:"pod"`
		} `json:"gpus"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("cci-agent gpus --json: %v\n%s", err, out)
	}
	got, owners := map[string][]string{}, map[string][]string{}
	for _, a := range rep.Allocations {
		for _, d := range a.Devices {
			got[a.PodID] = append(got[a.PodID], d.UUID)
		}
	}
	for _, g := range rep.GPUs {
		if g.Pod != "" {
			owners[g.Pod] = append(owners[g.Pod], g.UUID)
		}
	}
	if len(got) > 0 && !reflect.DeepEqual(got, owners) {
		t.Errorf("cci-agent: allocations %v but GPU owners %v", got, owners)
	}
	return got
}

// removeTask kills and deletes a ctr container in namespace ns ("" for the env's).
func removeTask(t *testing.T, env *e2eenv.Env, ns, id string) {
	t.Helper()
	if ns == "" {
		ns = env.Namespace
	}
	env.CtrIn(ns, "task", "kill", "-s", "SIGKILL", id)
	var errOut string
	if !waitFor(10*time.Second, func() bool {
		var err error
		_, errOut, err = env.CtrIn(ns, "task", "delete", id) // fails until the task has stopped
		return err == nil
	}) {
		t.Errorf("task delete %s/%s: %s", ns, id, errOut)
	}
	if _, errOut, err := env.CtrIn(ns, "containers", "delete", id); err != nil {
		t.Errorf("containers delete %s/%s: %v: %s", ns, id, err, errOut)
	}
}
