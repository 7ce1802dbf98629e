package demo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cci-shim/cci-shim/internal/crictl"
	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

var podAnnotations = map[string]string{
	"shm.cci.io/size":      "128Mi",
	"logs.cci.io/policies": `[{"container":"app","paths":["/var/log/app/*.log"]}]`,
}

// appResources are what kubelet sends for a container with limits 300m CPU
// and 700Mi memory; the pod's are the same (the sidecar sets none).
var appResources = &crictl.Resources{CPUPeriod: 100000, CPUQuota: 30000, MemoryLimitInBytes: 700 << 20}

func (d *demo) podConfig(name string, sysctls map[string]string) crictl.Pod {
	return crictl.Pod{
		Metadata:     crictl.Metadata{Name: name, Namespace: "demo", UID: e2eenv.PodUID(name)},
		LogDirectory: filepath.Join(d.env.Dir, "pod-logs", name),
		Linux:        &crictl.PodLinux{Sysctls: sysctls, Resources: appResources},
		Annotations:  podAnnotations,
	}
}

// criPod starts the demo pod with crictl: app and sidecar in one sandbox.
func (d *demo) criPod() (string, crictl.Pod) {
	pod := d.podConfig("web", map[string]string{"net.core.somaxconn": "1024"})
	sb, err := d.cri.RunPod(pod, "cci")
	if err != nil {
		d.p.Fatalf("%v", err)
	}
	d.p.Logf("   $ crictl runp --runtime cci pod.json\n   | %s", sb)
	for _, name := range []string{"app", "sidecar"} {
		c := crictl.Container{
			Metadata:    crictl.Metadata{Name: name},
			Image:       crictl.Image{Image: d.env.Image},
			Command:     []string{"sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"},
			Annotations: podAnnotations,
		}
		if name == "app" {
			c.Linux = &crictl.ContainerLinux{Resources: appResources}
		}
		if _, err := d.cri.StartContainer(sb, pod, c); err != nil {
			d.p.Fatalf("%v", err)
		}
	}
	for _, args := range [][]string{{"pods", "--id", sb}, {"ps", "--pod", sb}} {
		out, err := d.cri.Run(args...)
		if err != nil {
			d.p.Fatalf("%v", err)
		}
		d.p.Logf("   $ crictl %s\n%s", strings.Join(args, " "), indent(out))
	}
	return sb, pod
}

// shims prints the shim processes serving the pod.
func (d *demo) shims() {
	for _, bin := range []string{e2eenv.CCIShimBinary, e2eenv.RuncShimBinary} {
		for _, pid := range d.env.ShimPIDs(bin) {
			d.p.Logf("   %-24s pid %-7d RSS %5d KiB  parent %d", bin, pid, e2eenv.RSS(pid)>>10, ppid(pid))
		}
	}
}

func ppid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	var p int
	var comm, state string
	fmt.Sscanf(string(data), "%d %s %s %d", &p, &comm, &state, &p)
	return p
}

// exec runs a shell line in a container of the pod with crictl exec.
func (d *demo) exec(sb, container, line string) {
	id, err := d.cri.Run("ps", "--pod", sb, "--name", "^"+container+"$", "-q")
	if err != nil || id == "" || strings.Contains(id, "\n") {
		d.p.Fatalf("no single container %s in pod %s: %q %v", container, sb, id, err)
	}
	out, err := d.cri.Run("exec", id, "sh", "-c", line)
	if err != nil {
		d.p.Fatalf("%v", err)
	}
	d.p.Logf("   $ %s\n%s", line, indent(out))
}

// refusedPod tries a pod with the given sysctls and prints the refusal.
func (d *demo) refusedPod(name string, sysctls map[string]string) {
	id, err := d.cri.RunPod(d.podConfig("refused", sysctls), "cci")
	if err == nil {
		d.p.Errorf("pod with %s was not refused (pod %s)", name, id)
		d.cri.RemovePod(id)
		return
	}
	msg := lastErrLine(err.Error())
	if i := strings.Index(msg, "failed to create shim task: "); i >= 0 {
		// crictl logs the gRPC error inside a quoted msg="...".
		msg = strings.ReplaceAll(strings.TrimSuffix(msg[i+len("failed to create shim task: "):], `"`), `\"`, `"`)
	}
	d.p.Logf("   $ crictl runp --runtime cci refused.json   (sysctl %s)\n   refused: %s", name, msg)
}

// prepareGPUNode writes the fake GPU node: inventory, /proc/devices and a
// driver directory.
func (d *demo) prepareGPUNode() {
	dir := d.env.Dir
	files := map[string]string{
		"gpus.json":                    gpuFixture,
		"gpuroot/proc/devices":         "Character devices:\n195 nvidia\n508 nvidia-uvm\n",
		"driver/lib/libcuda.so.1":      "not a real driver: the demo host has no GPU\n",
		"driver/lib/libnvidia-ml.so.1": "not a real driver\n",
		"driver/bin/nvidia-smi":        "#!/bin/sh\necho 'nvidia-smi (demo stand-in)'\n",
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			d.p.Fatalf("preparing GPU node: %v", err)
		}
	}
}

func (d *demo) gpuPod() {
	id := d.id("gpu")
	if _, errOut, err := d.env.CtrRun("-d", "--runtime", runtime, "--annotation", "gpu.cci.io/count=1",
		"--env", "LD_LIBRARY_PATH=/opt/mine", d.env.Image, id, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"); err != nil {
		d.p.Errorf("GPU pod: %v: %s", err, lastErrLine(errOut))
		return
	}
	defer func() {
		d.env.Ctr("task", "kill", id)
		waitStopped(d, id)
		d.env.Ctr("task", "rm", id)
		d.env.Ctr("container", "rm", id)
	}()
	out, _, _ := d.env.Ctr("task", "exec", "--exec-id", "show", id, "sh", "-c",
		"ls /usr/local/nvidia/lib64 /dev/nvidia0; echo LD_LIBRARY_PATH=$LD_LIBRARY_PATH; nvidia-smi")
	d.p.Logf("   $ ctr task exec (no export needed)\n%s", indent(out))
}

func waitStopped(d *demo, id string) {
	for i := 0; i < 50; i++ {
		out, _, _ := d.env.Ctr("task", "ls")
		if !containsLine(out, id, "RUNNING") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsLine(out, id, state string) bool {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == id && f[2] == state {
			return true
		}
	}
	return false
}

// logs makes the app container write and rotate its log.
func (d *demo) logs(sb string) {
	d.exec(sb, "app", `cd /var/log/app && i=0; while [ $i -lt 150 ]; do echo "request $i served" >> access.log; i=$((i+1)); [ $((i % 50)) -eq 0 ] && mv access.log access.$i.log; done; ls`)
}

// sinkSummary reads the pod's file sink, named by containerd namespace and
// sandbox id (the pod's names are inside the records only).
func (d *demo) sinkSummary(sb string) {
	name, err := logfwd.SinkFileName(e2eenv.CRINamespace, sb)
	if err != nil {
		d.p.Errorf("log sink: %v", err)
		return
	}
	path := filepath.Join(d.env.Dir, "podlogs", name)
	f, err := os.Open(path)
	if err != nil {
		d.p.Errorf("log sink: %v", err)
		return
	}
	defer f.Close()
	seen, total := map[string]int{}, 0
	var first string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r struct{ Log string }
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			seen[r.Log]++
			total++
			if first == "" {
				first = sc.Text()
			}
		}
	}
	d.p.Logf("   log sink %s: %d records, %d distinct lines (150 written, rotated every 50)\n   first record: %s",
		filepath.Base(path), total, len(seen), first)
}
