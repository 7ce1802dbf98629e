package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestWebhookPodRunsFromReplacedImage is the webhook end to end without an
// API server: a pod is admitted by the real cci-webhook, then run through
// CRI the way kubelet would run the admitted pod (its image, its
// annotations as sandbox annotations, its hostPath volume as a bind mount,
// its limits as container resources) on the cci runtime.
//   - R26: the image the tenant wrote ("busybox:test") is pulled from the
//     name the webhook wrote, served by the test registry on 127.0.0.1;
//   - R4 under kubelet: the hostPath volume "data" (path .../hostside) is
//     replaced by its per-name entry only thanks to the webhook's
//     coordinator.cci.io/hostpath-volumes (CRI mounts carry no volume names;
//     without the map the shim refuses the container, checked too);
//   - R5: 300m/700Mi runs at 0.5 core / 1 GiB; the webhook's
//     resources.cci.io/containers is verified by the shim against what CRI
//     sends (kubelet's pod aggregate and the container's limits) and
//     accepted.
func TestWebhookPodRunsFromReplacedImage(t *testing.T) {
	reg, env := startRegistryEnv(t, []string{"mirror/busybox:test"})
	w := startWebhook(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	hostDir := filepath.Join(env.Dir, "hostside")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "host-file"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	pod := cciPod("replaced", map[string]string{
		"coordinator.cci.io/image-replacement":    `[{"repositoryPrefix":"","replaceWith":"` + reg.Host + `/mirror"}]`,
		"coordinator.cci.io/hostpath-replacement": `[{"name":"data","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"16Mi","medium":"Memory"}}]`,
	}, "busybox:test")
	app := &pod.Spec.Containers[0]
	app.Name = "app"
	app.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("300m"), corev1.ResourceMemory: resource.MustParse("700Mi")}
	app.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}}}}

	stored, msg := w.admit(t, pod)
	if msg != "" {
		t.Fatalf("admission refused the pod: %s", msg)
	}
	image := stored.Spec.Containers[0].Image
	if want := reg.Host + "/mirror/busybox:test"; image != want {
		t.Fatalf("admitted image %q, want %q", image, want)
	}
	t.Logf("admitted: image %s, annotations %v", image, stored.Annotations)

	// What kubelet does with the admitted pod.
	_, is := env.CRI()
	if _, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		t.Fatalf("PullImage %s: %v", image, err)
	}
	if !reg.Served("mirror/busybox", "test") {
		t.Fatalf("%s was not pulled from the test registry: %v", image, reg.Requests())
	}
	// kubelet sends the pod's aggregate with the sandbox (one container here).
	limits := func() *runtimeapi.LinuxContainerResources {
		return &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 30000, CpuShares: 307, MemoryLimitInBytes: 700 << 20}
	}
	kubeletSandbox := func(cfg *runtimeapi.PodSandboxConfig) *runtimeapi.PodSandboxConfig {
		h := sha(cfg.Metadata.Name)
		cfg.Metadata.Uid = h[0:8] + "-" + h[8:12] + "-4" + h[13:16] + "-8" + h[17:20] + "-" + h[20:32] // a pod UID as the API server makes them
		cfg.Linux.Resources = limits()
		return cfg
	}
	container := func() *runtimeapi.ContainerConfig {
		cc := sleeper(env, "app")
		cc.Image = &runtimeapi.ImageSpec{Image: image}
		cc.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: hostDir}}
		cc.Linux.Resources = limits()
		return cc
	}

	t.Run("without the webhook's volume map the shim refuses", func(t *testing.T) {
		ann := map[string]string{}
		for k, v := range stored.Annotations {
			if k != "coordinator.cci.io/hostpath-volumes" {
				ann[k] = v
			}
		}
		p := mustRunPod(ctx, t, env, kubeletSandbox(podConfig(env, "nomap", ann)))
		defer p.remove(ctx, t)
		_, err := p.start(ctx, container())
		wantRefused(t, "StartContainer", err, `hostPath volume "`+hostDir+`" is not allowed`)
	})

	p := mustRunPod(ctx, t, env, kubeletSandbox(podConfig(env, "replaced", stored.Annotations)))
	id := p.mustStart(ctx, t, container())
	out := p.exec(ctx, t, id, "grep ' /data ' /proc/mounts | cut -d' ' -f3; df -k /data; ls /data; touch /data/pod-file; "+
		"cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 5 || lines[0] != "tmpfs" || strings.Contains(out, "host-file") {
		t.Errorf("/data in the pod:\n%s\nwant a fresh tmpfs, not the host dir", out)
	}
	if kib := dfKiB(t, strings.Join(lines[1:3], "\n")); kib != 16<<10 {
		t.Errorf("/data size %d KiB, want 16384 (the entry's sizeLimit)", kib)
	}
	if got := lines[len(lines)-2:]; got[0] != "50000" || got[1] != "1073741824" {
		t.Errorf("cfs quota, memory limit = %q, want 50000 and 1073741824 (0.5 core, 1 GiB)", got)
	}
	if _, err := os.Stat(filepath.Join(hostDir, "pod-file")); err == nil {
		t.Error("the pod wrote into the host's hostPath dir")
	}
	p.remove(ctx, t)
	assertClean(t, env)
}
