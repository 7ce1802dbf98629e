package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
	"github.com/cci-shim/cci-shim/tests/kubeenv"
)

// kubePod is a one-container pod named name running script under sh in
// the test image, on the cci RuntimeClass ("" for the node's default
// runtime, runc). It stops within 2 s of a delete.
func kubePod(ns, name, runtimeClass, script string) *corev1.Pod {
	grace := int64(2)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			RestartPolicy:                 corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           e2eenv.ImageName,
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"sh", "-c", script},
			}},
		},
	}
	if runtimeClass != "" {
		p.Spec.RuntimeClassName = &runtimeClass
	}
	return p
}

// kubeLimits sets the app container's limits (requests default to them).
// The node has 2 cores and the cci RuntimeClass adds 250m of overhead to
// every pod: keep pods small.
func kubeLimits(p *corev1.Pod, cpu, memory string) *corev1.Pod {
	p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory),
	}
	return p
}

// sleepForever is a container script that does nothing until killed.
const sleepForever = "exec sleep 3600"

// kctx is a context for one step of a kube test.
func kctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// kubeCreatePod creates pod, to be deleted when the test ends if the test
// has not deleted it.
func kubeCreatePod(t *testing.T, c *kubeenv.Cluster, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	p, err := c.CreatePod(kctx(t, time.Minute), pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupPod(c, pod) })
	return p
}

// cleanupPod deletes pod if it is still there (a test that failed half-way).
func cleanupPod(c *kubeenv.Cluster, pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = c.DeletePod(ctx, pod.Namespace, pod.Name, 0)
}

// kubeRunPod creates pod and waits until it runs, failing the test otherwise.
// The pod is deleted when the test ends if the test has not deleted it.
func kubeRunPod(t *testing.T, c *kubeenv.Cluster, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	t.Cleanup(func() { cleanupPod(c, pod) })
	p, err := c.RunPod(kctx(t, 2*time.Minute), pod)
	if err != nil {
		t.Fatalf("pod %s/%s does not run: %v", pod.Namespace, pod.Name, err)
	}
	return p
}

// kubeDeletePod deletes a pod and waits until the API server no longer has it.
func kubeDeletePod(t *testing.T, c *kubeenv.Cluster, ns, name string) {
	t.Helper()
	if err := c.DeletePod(kctx(t, time.Minute), ns, name, 2); err != nil {
		t.Errorf("deleting pod %s/%s: %v", ns, name, err)
	}
}

// kubectlExec runs script under sh in the pod's container through
// `kubectl exec` (API server → kubelet's streaming server → CRI).
func kubectlExec(t *testing.T, c *kubeenv.Cluster, ns, pod, script string) string {
	t.Helper()
	out, errOut, err := c.Kubectl(kctx(t, time.Minute), "exec", "-n", ns, pod, "--", "sh", "-c", script)
	if err != nil {
		t.Fatalf("kubectl exec in %s/%s: %v: %s", ns, pod, err, errOut)
	}
	return out
}

// kubeWantEvent waits for a pod event with reason whose message holds every
// string of want.
func kubeWantEvent(t *testing.T, c *kubeenv.Cluster, ns, pod, reason string, want ...string) corev1.Event {
	t.Helper()
	ev, err := c.WaitEvent(kctx(t, 90*time.Second), ns, pod, reason, want[0])
	if err != nil {
		t.Fatalf("%v", err)
	}
	for _, w := range want[1:] {
		if !strings.Contains(ev.Message, w) {
			t.Errorf("event %s: %q does not contain %q", reason, ev.Message, w)
		}
	}
	return ev
}

// cgroupLimits is what the host's cgroups allow a container: its own CPU
// quota (cores) and memory limit, and the tightest of those on the way up
// to /kubepods (kubelet's pod and QoS cgroups).
type cgroupLimits struct {
	cpu, effectiveCPU       float64 // cores; 0 = unlimited
	memory, effectiveMemory int64   // bytes; 0 = unlimited
	cpuPath, memoryPath     string
}

// containerCgroupLimits reads the cgroup limits of the process whose
// /proc/<pid>/cgroup content is procCgroup (cgroup v1 or v2).
func containerCgroupLimits(t *testing.T, procCgroup string) cgroupLimits {
	t.Helper()
	var l cgroupLimits
	for _, line := range strings.Split(strings.TrimSpace(procCgroup), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			switch ctrl {
			case "cpu":
				l.cpuPath = filepath.Join("/sys/fs/cgroup", "cpu", parts[2])
			case "memory":
				l.memoryPath = filepath.Join("/sys/fs/cgroup", "memory", parts[2])
			}
		}
	}
	if l.cpuPath == "" || l.memoryPath == "" {
		t.Fatalf("no cgroup v1 cpu and memory controllers in %q (this test reads v1 files)", procCgroup)
	}
	readInt := func(p string) int64 {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return n
	}
	quota := func(dir string) float64 {
		q := readInt(filepath.Join(dir, "cpu.cfs_quota_us"))
		if q <= 0 {
			return 0
		}
		return float64(q) / float64(readInt(filepath.Join(dir, "cpu.cfs_period_us")))
	}
	memLimit := func(dir string) int64 {
		m := readInt(filepath.Join(dir, "memory.limit_in_bytes"))
		if m >= 1<<62 {
			return 0
		}
		return m
	}
	l.cpu, l.memory = quota(l.cpuPath), memLimit(l.memoryPath)
	l.effectiveCPU, l.effectiveMemory = l.cpu, l.memory
	for d := l.cpuPath; strings.Contains(d, "/kubepods"); d = filepath.Dir(d) {
		if q := quota(d); q > 0 && (l.effectiveCPU == 0 || q < l.effectiveCPU) {
			l.effectiveCPU = q
		}
	}
	for d := l.memoryPath; strings.Contains(d, "/kubepods"); d = filepath.Dir(d) {
		if m := memLimit(d); m > 0 && (l.effectiveMemory == 0 || m < l.effectiveMemory) {
			l.effectiveMemory = m
		}
	}
	return l
}

// fakeGPUNode builds what TestGPU's fake node needs (a driver dir with a
// real libcuda.so.1 and nvidia-smi, the fixture, a /proc/devices) and
// returns the node config lines and the cudacheck binary for gpuImage.
func fakeGPUNode(t *testing.T) (nodeConfig, cudacheck string) {
	t.Helper()
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
	for p, s := range map[string]string{
		filepath.Join(host, "libcuda.c"):    libcudaC,
		filepath.Join(host, "cudacheck.c"):  cudacheckC,
		filepath.Join(host, "fixture.json"): gpuFixture,
		filepath.Join(root, "proc/devices"): procDevices,
	} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	smi := "#!/bin/sh\necho \"NVIDIA-SMI " + gpuDriver + " (cci fake)\"\n"
	if err := os.WriteFile(filepath.Join(binDir, "nvidia-smi"), []byte(smi), 0o755); err != nil {
		t.Fatal(err)
	}
	cudacheck = filepath.Join(host, "cudacheck")
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", filepath.Join(libDir, "libcuda.so.1"), filepath.Join(host, "libcuda.c")},
		{"-O2", "-o", cudacheck, filepath.Join(host, "cudacheck.c")},
	} {
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return fmt.Sprintf(gpuNodeConfig, filepath.Join(host, "fixture.json"), root, libDir, binDir), cudacheck
}

// assertNoKubeLeaks fails when the cluster's pods left anything behind:
// sandboxes and containers in the runtime, shims, container processes,
// mounts, loop devices, sockets, CNI addresses, pod cgroups, kubelet pod
// dirs, log links. kubelet removes a deleted pod's containers and sandbox
// in its container GC (once a minute), so this waits.
func assertNoKubeLeaks(t *testing.T, c *kubeenv.Cluster) {
	t.Helper()
	began := time.Now()
	rs, _ := c.Env.CRI()
	var left []string
	if !waitFor(3*time.Minute, func() bool {
		left = nil
		ctx := kctx(t, 10*time.Second)
		sbs, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			left = append(left, err.Error())
			return false
		}
		for _, sb := range sbs.Items {
			left = append(left, fmt.Sprintf("sandbox %s/%s %s", sb.Metadata.GetNamespace(), sb.Metadata.GetName(), sb.State))
		}
		cs, err := rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			left = append(left, err.Error())
			return false
		}
		for _, ctr := range cs.Containers {
			left = append(left, fmt.Sprintf("container %s %s", ctr.Metadata.GetName(), ctr.State))
		}
		return len(left) == 0
	}) {
		t.Errorf("kubelet did not remove the deleted pods from the runtime in 3 minutes:\n  %s", strings.Join(left, "\n  "))
	}
	if leaks := c.WaitNoLeaks(time.Minute); len(leaks) > 0 {
		t.Errorf("left behind after the pods were deleted:\n  %s", strings.Join(leaks, "\n  "))
	}
	t.Logf("kubelet removed every deleted pod from the runtime, and nothing is left on the node, %v after the last delete", time.Since(began).Round(time.Second))
}
