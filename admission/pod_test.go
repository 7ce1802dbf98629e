package admission

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cci-shim/cci-shim/sandbox"
)

func ptr[T any](v T) *T { return &v }

func resources(cpu, mem string) corev1.ResourceRequirements {
	rl := corev1.ResourceList{}
	if cpu != "" {
		rl[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		rl[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return corev1.ResourceRequirements{Limits: rl}
}

// examplePod is a cci pod with every kind of container, a hostPath volume and
// other volumes.
func examplePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: map[string]string{
			AnnotationImageReplacement:            example2,
			sandbox.AnnotationHostPathReplacement: `[{"name":"data","policyType":"replaceByEmptyDir"}]`,
			sandbox.AnnotationHostPathVolumes:     `{"data":"/etc"}`,                        // the tenant's: overwritten
			sandbox.AnnotationContainers:          `[{"name":"app","limits":{"cpu":"64"}}]`, // overwritten
		}},
		Spec: corev1.PodSpec{
			RuntimeClassName: ptr("cci"),
			InitContainers: []corev1.Container{
				{Name: "setup", Image: "harbor.domain/ubuntu:latest", Resources: resources("2", "4Gi")},
				{Name: "proxy", Image: "harbor.domain/a/b/c/d/redis:latest", RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways),
					Resources: resources("100m", "")},
			},
			Containers: []corev1.Container{
				{Name: "app", Image: "nginx:latest", Resources: resources("300m", "700Mi"),
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}, {Name: "cache", MountPath: "/cache"}}},
				{Name: "best-effort", Image: "quay.example/x/y@" + digest},
			},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/data"}}},
				{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
}

func TestMutate(t *testing.T) {
	pod := examplePod()
	changes, err := Mutate(pod, nil)
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	wantImages := map[string]string{
		"setup":       "registry.example/org1/ubuntu:latest",
		"proxy":       "registry.example/org2/redis:latest",
		"app":         "registry.example/org1/nginx:latest",
		"best-effort": "quay.example/x/y@" + digest,
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.Image != wantImages[c.Name] {
			t.Errorf("container %s image = %q; want %q", c.Name, c.Image, wantImages[c.Name])
		}
	}
	if len(changes) != 3 {
		t.Errorf("changes = %+v; want 3", changes)
	}
	if got, want := pod.Annotations[sandbox.AnnotationHostPathVolumes], `{"data":"/srv/data"}`; got != want {
		t.Errorf("hostpath-volumes = %s; want %s", got, want)
	}
	want := `[{"name":"setup","init":true,"limits":{"cpu":"2000m","memory":"4294967296"}},` +
		`{"name":"proxy","init":true,"sidecar":true,"limits":{"cpu":"100m"}},` +
		`{"name":"app","init":false,"limits":{"cpu":"300m","memory":"734003200"}},` +
		`{"name":"best-effort","init":false}]`
	if got := pod.Annotations[sandbox.AnnotationContainers]; got != want {
		t.Errorf("containers =\n %s\nwant\n %s", got, want)
	}
	// What the shim reads back.
	cs, err := sandbox.ParseContainers(pod.Annotations[sandbox.AnnotationContainers])
	if err != nil || len(cs) != 4 || cs[2].Limits != (sandbox.Resources{MilliCPU: 300, Memory: 700 << 20}) || !cs[0].Init || !cs[1].Sidecar {
		t.Errorf("ParseContainers = %+v, %v", cs, err)
	}
	vols, err := sandbox.ParseHostPathVolumes(pod.Annotations[sandbox.AnnotationHostPathVolumes])
	if err != nil || vols["data"] != "/srv/data" || len(vols) != 1 {
		t.Errorf("ParseHostPathVolumes = %v, %v", vols, err)
	}
	if err := Validate(pod, nil); err != nil {
		t.Errorf("Validate after Mutate: %v", err)
	}
}

func TestMutateQuantityForms(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "a", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1e-3"), corev1.ResourceMemory: resource.MustParse("1e9")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0.0001"), corev1.ResourceMemory: resource.MustParse("1.5Gi")},
		}},
		{Name: "b", Resources: resources("-1", "1Ei")},
	}}}
	_, err := Mutate(pod, nil)
	if err == nil || !strings.Contains(err.Error(), `container "b": resources.limits.memory "1Ei" is not allowed`) {
		t.Fatalf("Mutate with 1Ei memory = %v; want a refusal naming the container and field", err)
	}
	pod.Spec.Containers[1].Resources = resources("-1", "")
	if _, err := Mutate(pod, nil); err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"a","init":false,"requests":{"cpu":"1m","memory":"1000000000"},"limits":{"cpu":"1m","memory":"1610612736"}},{"name":"b","init":false}]`
	if got := pod.Annotations[sandbox.AnnotationContainers]; got != want {
		t.Errorf("containers = %s; want %s", got, want)
	}
}

func TestMutatePodLevelResources(t *testing.T) {
	pod := examplePod()
	pod.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
	if _, err := Mutate(pod, nil); err != nil {
		t.Fatal(err)
	}
	if v, ok := pod.Annotations[sandbox.AnnotationContainers]; ok {
		t.Errorf("pod-level resources: containers annotation %q written (kept from the tenant?); want none", v)
	}
	if err := Validate(pod, nil); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestMutateRemovesTenantHostPathVolumes(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{sandbox.AnnotationHostPathVolumes: `{"x":"/"}`}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "a"}}}}
	if _, err := Mutate(pod, nil); err != nil {
		t.Fatal(err)
	}
	if v, ok := pod.Annotations[sandbox.AnnotationHostPathVolumes]; ok {
		t.Errorf("tenant's hostpath-volumes %q survived on a pod without hostPath volumes", v)
	}
}

func TestMutateRelativeHostPath(t *testing.T) {
	pod := examplePod()
	pod.Spec.Volumes[0].HostPath.Path = "srv/data"
	_, err := Mutate(pod, nil)
	if err == nil || !strings.Contains(err.Error(), `spec.volumes[0].hostPath.path "srv/data" is not allowed (volume "data"); allowed: a named volume with an absolute host path`) {
		t.Fatalf("Mutate = %v", err)
	}
}

func TestMutateBadImageReplacement(t *testing.T) {
	pod := examplePod()
	pod.Annotations[AnnotationImageReplacement] = `[{"repositoryPrefix":"harbor.domain/","replaceWith":"x"}]`
	_, err := Mutate(pod, nil)
	if err == nil || !strings.Contains(err.Error(), `entry 0 (repositoryPrefix "harbor.domain/"): repositoryPrefix "harbor.domain/" ends with "/"`) {
		t.Fatalf("Mutate = %v", err)
	}
}

// TestMutateUpdate: on UPDATE only images that changed are replaced, so an
// image gets at most one replacement however often the pod is updated,
// even when a replaced name matches another entry.
func TestMutateUpdate(t *testing.T) {
	chain := `[{"repositoryPrefix":"","replaceWith":"a.example/m"},{"repositoryPrefix":"a.example/m","replaceWith":"b.example/n"}]`
	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationImageReplacement: chain}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}}
	if _, err := Mutate(old, nil); err != nil {
		t.Fatal(err)
	}
	if got := old.Spec.Containers[0].Image; got != "a.example/m/nginx" {
		t.Fatalf("CREATE image = %q", got)
	}
	pod := old.DeepCopy()
	pod.Labels = map[string]string{"x": "y"}
	pod.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
	if _, err := Mutate(pod, old); err != nil {
		t.Fatal(err)
	}
	if got := pod.Spec.Containers[0].Image; got != "a.example/m/nginx" {
		t.Errorf("UPDATE replaced an unchanged image again: %q", got)
	}
	if got := pod.Spec.EphemeralContainers[0].Image; got != "a.example/m/busybox" {
		t.Errorf("new ephemeral container image = %q; want a.example/m/busybox", got)
	}
	pod2 := pod.DeepCopy()
	pod2.Spec.Containers[0].Image = "redis"
	if _, err := Mutate(pod2, pod); err != nil {
		t.Fatal(err)
	}
	if got := pod2.Spec.Containers[0].Image; got != "a.example/m/redis" {
		t.Errorf("UPDATE of the image to redis gave %q; want a.example/m/redis", got)
	}
}

func TestValidateCreateRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*corev1.Pod)
		want   []string
	}{
		{"hostPath without replacement", func(p *corev1.Pod) {
			delete(p.Annotations, sandbox.AnnotationHostPathReplacement)
		}, []string{`container "app": hostPath volume "/srv/data" is not allowed (volume "data" mounted at /data); allowed: hostPath volumes replaced by annotation coordinator.cci.io/hostpath-replacement`}},
		{"hostPath covered by its last path element", func(p *corev1.Pod) {
			p.Annotations[sandbox.AnnotationHostPathReplacement] = `[{"name":"data","policyType":"remove"}]`
			p.Spec.Volumes[0].Name = "vol"
			p.Spec.Containers[0].VolumeMounts[0].Name = "vol"
		}, nil},
		{"hostPath covered by *", func(p *corev1.Pod) {
			p.Annotations[sandbox.AnnotationHostPathReplacement] = `[{"name":"*","policyType":"remove"}]`
		}, nil},
		{"hostPath at /dev/shm", func(p *corev1.Pod) {
			delete(p.Annotations, sandbox.AnnotationHostPathReplacement)
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/dev/shm"}}
		}, nil},
		{"hostPath not mounted", func(p *corev1.Pod) {
			delete(p.Annotations, sandbox.AnnotationHostPathReplacement)
			p.Spec.Containers[0].VolumeMounts = nil
		}, nil},
		{"pod too large (R5)", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = resources("40", "100Gi")
		}, []string{`pod CPU "40.1 cores" is not allowed (pod is over 32 cores or 256 GiB, so it is not normalised); allowed: 0.25 to 32 cores, or exactly 48 or 64 cores`}},
		{"shm over pod memory (R10)", func(p *corev1.Pod) {
			p.Annotations[sandbox.AnnotationShmSize] = "8Gi"
		}, []string{`/dev/shm size 8 GiB (from annotation shm.cci.io/size) is larger than the pod memory 4 GiB`}},
		{"shm within pod memory", func(p *corev1.Pod) { p.Annotations[sandbox.AnnotationShmSize] = "2Gi" }, nil},
		{"bad NVIDIA_VISIBLE_DEVICES", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "NVIDIA_VISIBLE_DEVICES", Value: "MIG-1"}}
		}, []string{`container "app": env NVIDIA_VISIBLE_DEVICES "MIG-1" does not name whole GPUs`}},
		{"bad annotations and written ones changed", func(p *corev1.Pod) {
			p.Annotations["logs.cci.io/policy"] = "x"
			p.Annotations[sandbox.AnnotationContainers] = `[]`
		}, []string{`annotation "logs.cci.io/policy" is not a platform annotation`,
			`annotation resources.cci.io/containers="[]" is not allowed; allowed: the value cci-webhook writes for this pod`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := examplePod()
			if _, err := Mutate(pod, nil); err != nil {
				t.Fatal(err)
			}
			tc.modify(pod)
			// Mutate again if the change concerns what Mutate derives, as the API server would have.
			if !strings.Contains(tc.name, "written") {
				if _, err := Mutate(pod, nil); err != nil {
					t.Fatal(err)
				}
			}
			err := Validate(pod, nil)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil; want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestValidateUpdate: annotations that did not change are not re-validated
// (a pod admitted under older rules stays updatable); changed ones are.
func TestValidateUpdate(t *testing.T) {
	old := examplePod()
	if _, err := Mutate(old, nil); err != nil {
		t.Fatal(err)
	}
	old.Annotations["shm.cci.io/sise"] = "1Gi" // admitted before the allow-list
	pod := old.DeepCopy()
	pod.Labels = map[string]string{"l": "v"}
	if err := Validate(pod, old); err != nil {
		t.Errorf("UPDATE with unchanged annotations: %v", err)
	}
	pod.Annotations[logfwdKey] = `[{"container":"app","paths":["/proc/x"]}]`
	if err := Validate(pod, old); err == nil || !strings.Contains(err.Error(), "shm.cci.io/sise") || !strings.Contains(err.Error(), "/proc") {
		t.Errorf("UPDATE with a changed annotation = %v; want every annotation problem", err)
	}
	// A pod stored before the webhook existed: no written annotations.
	bare := examplePod()
	delete(bare.Annotations, sandbox.AnnotationContainers)
	delete(bare.Annotations, sandbox.AnnotationHostPathVolumes)
	delete(bare.Annotations, AnnotationImageReplacement)
	upd := bare.DeepCopy()
	upd.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
	if err := Validate(upd, bare); err != nil {
		t.Errorf("ephemeral container on a pod stored before the webhook: %v", err)
	}
}

const logfwdKey = "logs.cci.io/policies"

func TestIsCCIPod(t *testing.T) {
	pod := examplePod()
	if !IsCCIPod(pod, "cci") || !IsCCIPod(pod, "cci-gpu", "cci") || IsCCIPod(pod, "kata") || IsCCIPod(pod) ||
		IsCCIPod(&corev1.Pod{}, "cci") || IsCCIPod(nil, "cci") {
		t.Error("IsCCIPod")
	}
}
