package tests

import (
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
	"github.com/cci-shim/cci-shim/tests/kubeenv"
)

// TestKubelet drives the shim the way production does: a real kubelet
// (v1.37) with an API server, pods created with client-go and kubectl and
// as static pods, runtimeClassName cci through the packaged RuntimeClass,
// `kubectl exec` and `kubectl logs` through the API server. The env's node
// config names the kubelet's root dir (policy.kubelet_root);
// TestKubeletWithoutRootConfig runs without it.
func TestKubelet(t *testing.T) {
	gpuCfg, cudacheck := fakeGPUNode(t)
	c := kubeenv.Start(t, kubeenv.Options{Env: e2eenv.Options{NodeConfig: gpuCfg}})
	if err := c.Env.ImportGlibcImage(gpuImage, map[string]string{"/usr/bin/cudacheck": cudacheck}); err != nil {
		t.Fatalf("importing %s: %v", gpuImage, err)
	}
	t.Logf("kubelet start to node Ready: %v", c.KubeletStartToReady.Round(time.Millisecond))

	t.Run("static pod", func(t *testing.T) { kubeStaticPod(t, c) })
	t.Run("kubectl apply, wait, exec, logs, delete", func(t *testing.T) { kubectlPod(t, c) })
	t.Run("R4 hostPath replaced by *", func(t *testing.T) { kubeHostPathStar(t, c) })
	t.Run("R4 hostPath replaced per volume name", func(t *testing.T) { kubeHostPathByName(t, c) })
	t.Run("R4 hostPath without replacement refused", func(t *testing.T) { kubeHostPathRefused(t, c) })
	t.Run("R5 300m/700Mi runs at 0.5 core/1 GiB", func(t *testing.T) { kubePodSize(t, c) })
	t.Run("R5 invalid pod refused", func(t *testing.T) { kubePodSizeInvalid(t, c) })
	t.Run("R9 sysctls", func(t *testing.T) { kubeSysctls(t, c) })
	t.Run("R10 Memory emptyDir at /dev/shm", func(t *testing.T) { kubeShm(t, c, "shm") })
	t.Run("R12 GPU env in kubectl exec", func(t *testing.T) { kubeGPUExec(t, c) })
	t.Run("R14 kubectl logs lossless and throttled", func(t *testing.T) { kubeStdoutLogs(t, c) })
	t.Run("R15 log files collected", func(t *testing.T) { kubeLogFiles(t, c) })
	t.Run("webhook through the API server", func(t *testing.T) { kubeWebhook(t, c) })
	t.Run("cci-webhook through the API server", func(t *testing.T) { kubeCCIWebhook(t, c) })
	t.Run("create to running cci vs runc", func(t *testing.T) { kubeStartLatency(t, c) })
	t.Run("pod deletion leaves nothing behind", func(t *testing.T) { kubeDeletion(t, c) })
}

// kubeStaticPod: a static pod with runtimeClassName cci runs in the shim
// with its sysctl (R9) and its hostPath replaced (R4), shows as a mirror
// pod, answers kubectl exec and logs, and goes away with its manifest.
func kubeStaticPod(t *testing.T, c *kubeenv.Cluster) {
	before := len(c.Env.ShimPIDs(e2eenv.CCIShimBinary))
	pod := kubePod("default", "static-web", kubeenv.RuntimeClassCCI, "echo static-hello; "+sleepForever)
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmni", Value: "2048"}}}
	pod.Annotations["coordinator.cci.io/hostpath-replacement"] = `[{"name":"*","policyType":"replaceByEmptyDir","emptyDir":{"medium":"Memory","sizeLimit":"16Mi"}}]`
	kubeAddHostPath(pod, "host-etc", "/etc", "/host")
	mirror, err := c.AddStaticPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitPod(kctx(t, 2*time.Minute), "default", mirror, kubeenv.Running); err != nil {
		t.Fatalf("static pod: %v\nevents: %s", err, c.EventSummary(kctx(t, 10*time.Second), "default", mirror))
	}
	if n := len(c.Env.ShimPIDs(e2eenv.CCIShimBinary)); n != before+1 {
		t.Errorf("cci shims: %d before the static pod, %d with it; want one more", before, n)
	}
	if got := strings.Fields(kubectlExec(t, c, "default", mirror, "cat /proc/sys/kernel/shmmni; ls -A /host | wc -l; df -k /host | tail -1 | awk '{print $2}'")); strings.Join(got, " ") != "2048 0 16384" {
		t.Errorf("kernel.shmmni, files in /host and its KiB in the static pod = %q, want 2048 (R9), 0 and 16384 (R4: /etc replaced by a 16Mi emptyDir)", got)
	}
	if !waitFor(20*time.Second, func() bool {
		out, _, _ := c.Kubectl(kctx(t, 20*time.Second), "logs", "-n", "default", mirror)
		return out == "static-hello\n"
	}) {
		out, errOut, err := c.Kubectl(kctx(t, 20*time.Second), "logs", "-n", "default", mirror)
		t.Errorf("kubectl logs %s = %q (%v, %s), want \"static-hello\\n\"", mirror, out, err, errOut)
	}
	if err := c.RemoveStaticPod(pod.Name); err != nil {
		t.Fatal(err)
	}
	if !waitFor(time.Minute, func() bool { return len(c.Env.ShimPIDs(e2eenv.CCIShimBinary)) == before }) {
		t.Errorf("the static pod's shim still runs a minute after its manifest was removed")
	}
}

// kubectlPod: the commands the platform's users run, from a YAML manifest
// that selects the packaged RuntimeClass.
func kubectlPod(t *testing.T, c *kubeenv.Cluster) {
	if err := c.EnsureNamespace(kctx(t, time.Minute), "users"); err != nil {
		t.Fatal(err)
	}
	manifest := `apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: users
spec:
  runtimeClassName: cci
  nodeName: ` + c.NodeName + `
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: ` + e2eenv.ImageName + `
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello-from-kubectl; exec sleep 3600"]
`
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		var in []byte
		if stdin != "" {
			in = []byte(stdin)
		}
		out, errOut, err := c.KubectlStdin(kctx(t, 2*time.Minute), in, args...)
		if err != nil {
			t.Fatalf("%v: %s", err, errOut)
		}
		return out
	}
	kubectl(manifest, "apply", "-f", "-")
	t.Cleanup(func() { cleanupPod(c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "users", Name: "hello"}}) })
	kubectl("", "wait", "-n", "users", "--for=condition=Ready", "pod/hello", "--timeout=90s")
	if got := kubectl("", "get", "-n", "users", "pod/hello", "-o", "jsonpath={.spec.nodeSelector}"); !strings.Contains(got, kubeenv.NodeLabel) {
		t.Errorf("nodeSelector %q: the RuntimeClass's scheduling did not reach the pod", got)
	}
	if got := kubectl("", "exec", "-n", "users", "hello", "--", "cat", "/proc/1/cmdline"); !strings.HasPrefix(got, "sleep") {
		t.Errorf("kubectl exec: pid 1 is %q, want sleep", got)
	}
	if got := kubectl("", "logs", "-n", "users", "hello"); got != "hello-from-kubectl\n" {
		t.Errorf("kubectl logs = %q", got)
	}
	kubectl("", "delete", "-n", "users", "pod/hello", "--wait=true", "--timeout=90s")
}

// kubeHostPathStar: a "*" replacement turns a hostPath of the host's /etc
// into a private Memory emptyDir of the given size (R4).
func kubeHostPathStar(t *testing.T, c *kubeenv.Cluster) {
	pod := kubePod("r4", "hostpath-star", kubeenv.RuntimeClassCCI, sleepForever)
	kubeLimits(pod, "500m", "2Gi")
	pod.Annotations["coordinator.cci.io/hostpath-replacement"] = `[{"name":"*","policyType":"replaceByEmptyDir","emptyDir":{"medium":"Memory","sizeLimit":"64Mi"}}]`
	kubeAddHostPath(pod, "host-etc", "/etc", "/host")
	kubeRunPod(t, c, pod)
	out := kubectlExec(t, c, "r4", pod.Name, "ls -A /host | wc -l; df -k /host | tail -1 | awk '{print $2}'; echo planted > /host/passwd; cat /host/passwd")
	if got, want := strings.Fields(out), []string{"0", "65536", "planted"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("/host (a hostPath of /etc replaced by a 64Mi Memory emptyDir): files, KiB, write = %q, want %q", got, want)
	}
	if b, _ := kubeReadFile("/etc/passwd"); strings.Contains(b, "planted") {
		t.Fatal("the pod wrote to the host's /etc/passwd")
	}
	kubeDeletePod(t, c, "r4", pod.Name)
}

// kubeHostPathByName: entries that name volumes apply to those volumes
// only, through the name→path map that the cci-webhook writes into
// coordinator.cci.io/hostpath-volumes (the test writes it here; kubelet's
// CRI mounts carry no volume names). The volume names differ from the
// paths' last elements, so only the map can match them.
func kubeHostPathByName(t *testing.T, c *kubeenv.Cluster) {
	pod := kubePod("r4", "hostpath-names", kubeenv.RuntimeClassCCI, sleepForever)
	kubeLimits(pod, "500m", "2Gi")
	pod.Annotations["coordinator.cci.io/hostpath-replacement"] = `[` +
		`{"name":"config","policyType":"replaceByEmptyDir","emptyDir":{"medium":"Memory","sizeLimit":"32Mi"}},` +
		`{"name":"docs","policyType":"remove"}]`
	pod.Annotations["coordinator.cci.io/hostpath-volumes"] = `{"config":"/etc","docs":"/usr/share"}`
	kubeAddHostPath(pod, "config", "/etc", "/config")
	kubeAddHostPath(pod, "docs", "/usr/share", "/docs")
	kubeRunPod(t, c, pod)
	out := kubectlExec(t, c, "r4", pod.Name, "ls -A /config | wc -l; df -k /config | tail -1 | awk '{print $2}'; if [ -e /docs ] && [ -n \"$(ls -A /docs)\" ]; then echo docs-mounted; else echo docs-removed; fi")
	if got, want := strings.Fields(out), []string{"0", "32768", "docs-removed"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("config (replaced by a 32Mi Memory emptyDir) files, KiB; docs (removed) = %q, want %q", got, want)
	}
	kubeDeletePod(t, c, "r4", pod.Name)
}

// kubeHostPathRefused: without a replacement the pod never starts and its
// events carry the R4 message.
func kubeHostPathRefused(t *testing.T, c *kubeenv.Cluster) {
	pod := kubePod("r4", "hostpath-refused", kubeenv.RuntimeClassCCI, sleepForever)
	kubeAddHostPath(pod, "host-etc", "/etc", "/host")
	kubeCreatePod(t, c, pod)
	ev := kubeWantEvent(t, c, "r4", pod.Name, "Failed", `hostPath volume "/etc" is not allowed`,
		"allowed: hostPath volumes replaced by annotation coordinator.cci.io/hostpath-replacement")
	t.Logf("event: %s", ev.Message)
	kubeDeletePod(t, c, "r4", pod.Name)
}

func kubeAddHostPath(p *corev1.Pod, name, hostPath, mountPath string) {
	dir := corev1.HostPathDirectory
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostPath, Type: &dir}}})
	p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: name, MountPath: mountPath})
}

// kubePodSize: kubelet sends 300m/700Mi; R5 normalises the pod to 0.5 core
// and 1 GiB, and the container runs with that (its own cgroup, and nothing
// tighter above it).
func kubePodSize(t *testing.T, c *kubeenv.Cluster) {
	pod := kubeLimits(kubePod("r5", "size-300m", kubeenv.RuntimeClassCCI, sleepForever), "300m", "700Mi")
	kubeRunPod(t, c, pod)
	l := containerCgroupLimits(t, kubectlExec(t, c, "r5", pod.Name, "cat /proc/self/cgroup"))
	t.Logf("container cgroups %s, %s: CPU %.3g cores (effective %.3g), memory %d (effective %d)", l.cpuPath, l.memoryPath, l.cpu, l.effectiveCPU, l.memory, l.effectiveMemory)
	if l.cpu != 0.5 || l.effectiveCPU != 0.5 {
		t.Errorf("CPU: container %.3g cores, effective %.3g; want 0.5 (300m normalised)", l.cpu, l.effectiveCPU)
	}
	if l.memory != 1<<30 || l.effectiveMemory != 1<<30 {
		t.Errorf("memory: container %d, effective %d; want %d (700Mi normalised to 1 GiB)", l.memory, l.effectiveMemory, 1<<30)
	}
	kubeDeletePod(t, c, "r5", pod.Name)
}

// kubePodSizeInvalid: a pod of 40 cores cannot be normalised (over 32) and
// is no valid size: RunPodSandbox fails with the R5 message, which kubelet
// puts in the pod's events. Requests are small, so kubelet admits it.
func kubePodSizeInvalid(t *testing.T, c *kubeenv.Cluster) {
	pod := kubePod("r5", "size-40-cores", kubeenv.RuntimeClassCCI, sleepForever)
	pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("40"), corev1.ResourceMemory: resource.MustParse("100Gi")},
	}
	kubeCreatePod(t, c, pod)
	ev := kubeWantEvent(t, c, "r5", pod.Name, "FailedCreatePodSandBox", `pod CPU "40 cores" is not allowed`,
		"allowed: 0.25 to 32 cores, or exactly 48 or 64 cores")
	t.Logf("event: %s", ev.Message)
	kubeDeletePod(t, c, "r5", pod.Name)
}

// kubeSysctls: R9's groups reach the pod (kubelet allows them as unsafe
// sysctls); net.netfilter.*, which kubelet lets through as net.*, is refused
// by the shim with the R9 message in the pod's events.
func kubeSysctls(t *testing.T, c *kubeenv.Cluster) {
	pod := kubePod("r9", "sysctls", kubeenv.RuntimeClassCCI, sleepForever)
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
		{Name: "kernel.msgmax", Value: "65536"}, {Name: "kernel.shm_rmid_forced", Value: "1"},
		{Name: "net.ipv4.tcp_keepalive_time", Value: "600"}, {Name: "fs.mqueue.msg_max", Value: "64"},
	}}
	kubeRunPod(t, c, pod)
	out := kubectlExec(t, c, "r9", pod.Name, "cat /proc/sys/kernel/msgmax /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/tcp_keepalive_time /proc/sys/fs/mqueue/msg_max")
	if got, want := strings.Fields(out), "65536 1 600 64"; strings.Join(got, " ") != want {
		t.Errorf("sysctls in the pod = %q, want %q", got, want)
	}
	kubeDeletePod(t, c, "r9", pod.Name)

	bad := kubePod("r9", "sysctl-netfilter", kubeenv.RuntimeClassCCI, sleepForever)
	bad.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "net.netfilter.nf_conntrack_max", Value: "1"}}}
	kubeCreatePod(t, c, bad)
	ev := kubeWantEvent(t, c, "r9", bad.Name, "FailedCreatePodSandBox", `sysctl "net.netfilter.nf_conntrack_max" is not allowed`,
		"allowed: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.* except net.netfilter.* and net.ipv4.vs.*")
	t.Logf("event: %s", ev.Message)
	kubeDeletePod(t, c, "r9", bad.Name)
}

// kubeShm: a Memory emptyDir of 256Mi at /dev/shm gives /dev/shm 256 MiB
// (R10), where the default is 64 MiB.
func kubeShm(t *testing.T, c *kubeenv.Cluster, ns string) {
	pod := kubeLimits(kubePod(ns, "shm-256", kubeenv.RuntimeClassCCI, sleepForever), "500m", "2Gi")
	size := resource.MustParse("256Mi")
	pod.Spec.Volumes = []corev1.Volume{{Name: "dshm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "dshm", MountPath: "/dev/shm"}}
	plain := kubeLimits(kubePod(ns, "shm-default", kubeenv.RuntimeClassCCI, sleepForever), "500m", "2Gi")
	kubeRunPod(t, c, pod)
	kubeRunPod(t, c, plain)
	for name, want := range map[string]string{pod.Name: "262144", plain.Name: "65536"} {
		out := kubectlExec(t, c, ns, name, "df -k /dev/shm | tail -1 | awk '{print $2}'")
		if got := strings.TrimSpace(out); got != want {
			t.Errorf("%s: /dev/shm is %s KiB, want %s", name, got, want)
		}
	}
	kubeDeletePod(t, c, ns, pod.Name)
	kubeDeletePod(t, c, ns, plain.Name)
}

// kubeGPUExec: a GPU pod's `kubectl exec` session finds libcuda without an
// export: LD_LIBRARY_PATH and PATH are set in the exec process (R12).
func kubeGPUExec(t *testing.T, c *kubeenv.Cluster) {
	pod := kubePod("r12", "cuda", kubeenv.RuntimeClassCCI, sleepForever)
	pod.Spec.Containers[0].Image = gpuImage
	pod.Annotations["gpu.cci.io/count"] = "1"
	kubeRunPod(t, c, pod)
	p := probeLines(kubectlExec(t, c, "r12", pod.Name, gpuProbe))
	t.Logf("kubectl exec: %s; LD_LIBRARY_PATH=%s", p["cudacheck:"], p["ld"])
	wantGPU(t, p, nvLib, "nvidia0")
	if got := gpuAllocations(t, c.Env); len(got) != 1 {
		t.Errorf("GPU ledger = %v, want one pod holding one GPU", got)
	}
	kubeDeletePod(t, c, "r12", pod.Name)
	if !waitFor(2*time.Minute, func() bool { return len(gpuAllocations(t, c.Env)) == 0 }) {
		t.Errorf("after the pod was deleted the ledger still holds %v", gpuAllocations(t, c.Env))
	}
}

// kubeMedian of durations.
func kubeMedian(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
