package tests

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
	"github.com/cci-shim/cci-shim/tests/kubeenv"
)

// kubeWebhook: a mutating webhook registered with RegisterMutatingWebhook
// is called by the real API server over TLS (its certificate signed by the
// cluster CA) with a real AdmissionReview, and its patch lands in the pod.
// The webhook here is a fixture of this test, not cci-webhook: it proves the
// path that cci-webhook's end-to-end test will use.
func kubeWebhook(t *testing.T, c *kubeenv.Cluster) {
	cert, _, err := c.ServingCert("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	reviews := make(chan admissionv1.AdmissionReview, 16)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &rev); err != nil || rev.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		select {
		case reviews <- rev:
		default:
		}
		var pod corev1.Pod
		_ = json.Unmarshal(rev.Request.Object.Raw, &pod)
		patch := `[{"op":"add","path":"/metadata/annotations/kubeenv.cci.io~1seen","value":"` + string(rev.Request.UID) + `"}]`
		if len(pod.Annotations) == 0 {
			patch = `[{"op":"add","path":"/metadata/annotations","value":{"kubeenv.cci.io/seen":"` + string(rev.Request.UID) + `"}}]`
		}
		pt := admissionv1.PatchTypeJSONPatch
		rev.Response = &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true, Patch: []byte(patch), PatchType: &pt}
		rev.Request = nil
		_ = json.NewEncoder(w).Encode(rev)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ctx := kctx(t, 2*time.Minute)
	const ns = "webhook"
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.RegisterMutatingWebhook(ctx, kubeenv.Webhook{
		Name:              "kubeenv-fixture",
		URL:               "https://" + ln.Addr().String() + "/mutate",
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
	pod := kubePod(ns, "mutated", kubeenv.RuntimeClassCCI, sleepForever)
	pod.Spec.NodeName = c.NodeName
	var got *corev1.Pod
	// The API server picks the configuration up asynchronously: dry-run
	// creates until the patch shows.
	if !waitFor(30*time.Second, func() bool {
		got, err = c.Client.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && got.Annotations["kubeenv.cci.io/seen"] != ""
	}) {
		t.Fatalf("the API server never applied the webhook's patch: %v, annotations %v", err, got.GetAnnotations())
	}
	p := kubeRunPod(t, c, pod)
	var rev admissionv1.AdmissionReview
	for len(reviews) > 0 {
		rev = <-reviews
	}
	if p.Annotations["kubeenv.cci.io/seen"] == "" || rev.Request == nil || rev.Request.Kind.Kind != "Pod" || rev.Request.Namespace != ns ||
		rev.Request.Operation != admissionv1.Create {
		t.Errorf("pod annotations %v; last review %+v: want the webhook's mark from a CREATE of a Pod in %s", p.Annotations, rev.Request, ns)
	}
	kubeDeletePod(t, c, ns, pod.Name)
}

// kubeStartLatency measures a pod's time from create to Running through
// kubelet, alternating the cci RuntimeClass and the default runtime (runc),
// and logs the medians. It asserts nothing about time: the machine is
// shared; ccibench owns performance.
func kubeStartLatency(t *testing.T, c *kubeenv.Cluster) {
	const rounds = 3
	times := map[string][]time.Duration{}
	for i := range rounds {
		for _, rc := range []string{kubeenv.RuntimeClassCCI, ""} {
			handler := rc
			if handler == "" {
				handler = "runc" // containerd's default runtime
			}
			name := fmt.Sprintf("latency-%s-%d", handler, i)
			pod := kubePod("latency", name, rc, sleepForever)
			began := time.Now()
			kubeRunPod(t, c, pod)
			times[rc] = append(times[rc], time.Since(began))
			kubeDeletePod(t, c, "latency", name)
		}
	}
	cci, runc := kubeMedian(times[kubeenv.RuntimeClassCCI]), kubeMedian(times[""])
	t.Logf("create to Running, median of %d: cci %v, runc %v (cci/runc %.2f); all: cci %v, runc %v",
		rounds, cci.Round(time.Millisecond), runc.Round(time.Millisecond), float64(cci)/float64(runc), times[kubeenv.RuntimeClassCCI], times[""])
}

// kubeDeletion: a pod with every kind of volume the shim and kubelet set up
// (emptyDir on disk and in memory at /dev/shm, a hostPath replaced by a
// disk-backed local dir, a config map, the service-account token, a log
// policy) is deleted; then nothing of it, or of the pods before it, is left
// on the node: no shim, container, mount, loop device, socket, CNI address,
// pod cgroup, kubelet pod dir, log link or pod volume dir.
func kubeDeletion(t *testing.T, c *kubeenv.Cluster) {
	ctx := kctx(t, time.Minute)
	if err := c.EnsureNamespace(ctx, "cleanup"); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"k": "v"}}
	if _, err := c.Client.CoreV1().ConfigMaps("cleanup").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := kubeLimits(kubePod("cleanup", "everything", kubeenv.RuntimeClassCCI, "mkdir -p /var/log/app; echo x > /var/log/app/a.log; "+sleepForever), "500m", "2Gi")
	pod.Annotations["coordinator.cci.io/hostpath-replacement"] = `[{"name":"*","policyType":"replaceByLocalDir","localDir":{"sizeLimit":"1Gi"}}]`
	pod.Annotations["logs.cci.io/policies"] = `[{"container":"app","paths":["/var/log/app/*.log"]}]`
	shmSize := resource.MustParse("128Mi")
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "dshm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &shmSize}}},
		{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
	}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "scratch", MountPath: "/scratch"}, {Name: "dshm", MountPath: "/dev/shm"}, {Name: "settings", MountPath: "/etc/settings"},
	}
	kubeAddHostPath(pod, "host-tmp", "/var/tmp", "/data")
	p := kubeRunPod(t, c, pod)
	if id, err := c.SandboxID(kctx(t, 10*time.Second), p); err == nil {
		t.Logf("pod cleanup/everything: sandbox %s", id)
	}
	if got := strings.TrimSpace(kubectlExec(t, c, "cleanup", pod.Name, "cat /etc/settings/k; echo; df -k /data | tail -1 | awk '{print $1}'")); !strings.HasPrefix(got, "v\n/dev/loop") {
		t.Errorf("config map and replaced hostPath: %q, want v and a loop device", got)
	}
	kubeDeletePod(t, c, "cleanup", pod.Name)
	assertNoKubeLeaks(t, c)
	// policy.volume_dir holds <namespace>/<pod>/ per pod.
	var left []string
	if !waitFor(time.Minute, func() bool {
		left, _ = filepath.Glob(filepath.Join(c.Env.Dir, "volumes", "*", "*"))
		return len(left) == 0
	}) {
		for _, d := range left {
			var files []string
			_ = filepath.WalkDir(d, func(p string, _ fs.DirEntry, _ error) error {
				files = append(files, strings.TrimPrefix(p, d))
				return nil
			})
			t.Errorf("pod volume dir left a minute after the pods were removed: %s: %v", d, files)
		}
	}
	if got := gpuAllocations(t, c.Env); len(got) != 0 {
		t.Errorf("GPU ledger holds %v after every pod was deleted", got)
	}
}

// TestKubeletWithoutRootConfig: a node whose operator configured none of
// policy.kubelet_root, policy.containerd_root, policy.containerd_state
// (the shim's defaults name /var/lib/kubelet and /var/lib/containerd; the
// env's kubelet and containerd keep their files in the env). kubelet's own
// volumes (the service-account token, etc-hosts, termination log) and
// CRI's files must still be recognised as the pod's own, and a Memory
// emptyDir at /dev/shm still sizes it (R10).
func TestKubeletWithoutRootConfig(t *testing.T) {
	c := kubeenv.Start(t, kubeenv.Options{Env: e2eenv.Options{DefaultPolicyRoots: true}})
	t.Run("pod with kubelet's volumes runs", func(t *testing.T) {
		pod := kubePod("noroot", "plain", kubeenv.RuntimeClassCCI, "echo plain-ok; "+sleepForever)
		kubeRunPod(t, c, pod)
		if out := kubectlExec(t, c, "noroot", pod.Name, "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace"); out != "noroot" {
			t.Errorf("service-account namespace file = %q, want noroot", out)
		}
		kubeDeletePod(t, c, "noroot", pod.Name)
	})
	t.Run("R10 Memory emptyDir at /dev/shm", func(t *testing.T) { kubeShm(t, c, "noroot") })
	t.Run("pod deletion leaves nothing behind", func(t *testing.T) { assertNoKubeLeaks(t, c) })
}
