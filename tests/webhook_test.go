package tests

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The issue-15 examples of R26.
const (
	r26Example1 = `[{"repositoryPrefix":"harbor.domain/a/b/c/d","replaceWith":"registry.example/org"}]`
	r26Example2 = `[{"repositoryPrefix":"harbor.domain","replaceWith":"registry.example/org1"},` +
		`{"repositoryPrefix":"","replaceWith":"registry.example/org1"},` +
		`{"repositoryPrefix":"harbor.domain/a/b/c/d","replaceWith":"registry.example/org2"}]`
	testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// cciPod is a pod of the cci RuntimeClass with one container per image
// (init containers for images prefixed "init:").
func cciPod(name string, annotations map[string]string, images ...string) *corev1.Pod {
	rc := "cci"
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tenant-a", Annotations: annotations},
		Spec:       corev1.PodSpec{RuntimeClassName: &rc},
	}
	for i, img := range images {
		c := corev1.Container{Name: "c" + string(rune('0'+i)), Image: strings.TrimPrefix(img, "init:")}
		if strings.HasPrefix(img, "init:") {
			p.Spec.InitContainers = append(p.Spec.InitContainers, c)
		} else {
			p.Spec.Containers = append(p.Spec.Containers, c)
		}
	}
	return p
}

func images(p *corev1.Pod) []string {
	var out []string
	for _, c := range p.Spec.InitContainers {
		out = append(out, "init:"+c.Image)
	}
	for _, c := range p.Spec.Containers {
		out = append(out, c.Image)
	}
	for _, c := range p.Spec.EphemeralContainers {
		out = append(out, "ephemeral:"+c.Image)
	}
	return out
}

// TestWebhookReview runs the real cci-webhook binary over HTTPS and sends it
// AdmissionReview requests as the API server does: R26's examples, the
// annotations the shim needs, refusals with the rules' messages, pods of
// other RuntimeClasses, UPDATE and kubectl debug; then SIGTERM.
func TestWebhookReview(t *testing.T) {
	w := startWebhook(t)

	t.Run("R26 examples", func(t *testing.T) {
		for _, tc := range []struct {
			rules    string
			in, want []string
		}{
			{r26Example1,
				[]string{"harbor.domain/a/b/c/d/ubuntu:latest", "harbor.domain/a/b/c/d/nginx:latest"},
				[]string{"registry.example/org/ubuntu:latest", "registry.example/org/nginx:latest"}},
			{r26Example2,
				[]string{"init:harbor.domain/ubuntu:latest", "nginx:latest", "harbor.domain/a/b/c/d/redis:latest"},
				[]string{"init:registry.example/org1/ubuntu:latest", "registry.example/org1/nginx:latest", "registry.example/org2/redis:latest"}},
			{r26Example2,
				[]string{"nginx@" + testDigest, "harbor.domain/a/redis:7", "other.example/x"},
				[]string{"registry.example/org1/nginx@" + testDigest, "harbor.domain/a/redis:7", "other.example/x"}},
			{`[{"repositoryPrefix":"host:5000","replaceWith":"registry.example/mirror"}]`,
				[]string{"host:5000/x:1", "host:5000/team/y:1"},
				[]string{"registry.example/mirror/x:1", "host:5000/team/y:1"}},
		} {
			got, msg := w.admit(t, cciPod("r26", map[string]string{"coordinator.cci.io/image-replacement": tc.rules}, tc.in...))
			if msg != "" {
				t.Fatalf("%s: refused: %s", tc.rules, msg)
			}
			if g := images(got); strings.Join(g, " ") != strings.Join(tc.want, " ") {
				t.Errorf("rules %s:\n images %q\n got    %q\n want   %q", tc.rules, tc.in, g, tc.want)
			}
		}
	})

	t.Run("annotations for the shim", func(t *testing.T) {
		p := cciPod("vols", map[string]string{
			"coordinator.cci.io/hostpath-volumes":     `{"data":"/etc"}`, // the tenant's: overwritten
			"resources.cci.io/containers":             `[{"name":"c0","limits":{"cpu":"64","memory":"512Gi"}}]`,
			"coordinator.cci.io/hostpath-replacement": `[{"name":"data","policyType":"replaceByEmptyDir"}]`,
		}, "init:busybox", "nginx")
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("300m"), corev1.ResourceMemory: resource.MustParse("700Mi")}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/tenant-data"}}}}
		got, msg := w.admit(t, p)
		if msg != "" {
			t.Fatalf("refused: %s", msg)
		}
		if v := got.Annotations["coordinator.cci.io/hostpath-volumes"]; v != `{"data":"/srv/tenant-data"}` {
			t.Errorf("hostpath-volumes = %s", v)
		}
		if v, want := got.Annotations["resources.cci.io/containers"],
			`[{"name":"c0","init":true},{"name":"c1","init":false,"limits":{"cpu":"300m","memory":"734003200"}}]`; v != want {
			t.Errorf("containers = %s\nwant %s", v, want)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			annotations map[string]string
			mounts      bool
			want        string
		}{
			{map[string]string{"coordinator.cci.io/image-replacement": `[{"repositoryPrefix":"harbor.domain/","replaceWith":"registry.example/org"}]`}, false,
				`annotation coordinator.cci.io/image-replacement "[{\"repositoryPrefix\":\"harbor.domain/\",\"replaceWith\":\"registry.example/org\"}]" is not allowed (entry 0 (repositoryPrefix "harbor.domain/"): repositoryPrefix "harbor.domain/" ends with "/")`},
			{map[string]string{"coordinator.cci.io/image-replacement": `[{"repositoryPrefix":"a","replaceWith":"b"},{"repositoryPrefix":"a","replaceWith":"c"}]`}, false,
				`entry 1 (repositoryPrefix "a"): repositoryPrefix is already used by entry 0`},
			{map[string]string{"coordinator.cci.io/image-replacement": `[{"repositoryPrefix":"Harbor/X","replaceWith":"b"}]`}, false,
				`repositoryPrefix "Harbor/X" does not follow the image name rules`},
			{map[string]string{"shm.cci.io/sise": "1Gi"}, false, `annotation "shm.cci.io/sise" is not a platform annotation; allowed keys in the cci.io domains: coordinator.cci.io/hostpath-replacement, `},
			{map[string]string{"shm.cci.io/size": "lots"}, false, `annotation shm.cci.io/size "lots" is not allowed (not a positive memory quantity)`},
			{map[string]string{"throttle.cci.io/stdio-bps": "-5"}, false, `annotation "throttle.cci.io/stdio-bps"="-5": want a positive integer per second`},
			{map[string]string{"logs.cci.io/policies": `[{"container":"c0","paths":["/proc/*.log"]}]`}, false, `annotation logs.cci.io/policies: policy[0]`},
			{nil, true, `container "c0": hostPath volume "/srv/x" is not allowed (volume "x" mounted at /x)`},
		} {
			p := cciPod("bad", tc.annotations, "nginx")
			if tc.mounts {
				p.Spec.Volumes = []corev1.Volume{{Name: "x", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/x"}}}}
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "x", MountPath: "/x"}}
			}
			_, msg := w.admit(t, p)
			if !strings.Contains(msg, tc.want) {
				t.Errorf("annotations %v: refusal %q\nwant it to contain %q", tc.annotations, msg, tc.want)
			} else {
				t.Logf("kubectl apply would print: %s", msg)
			}
		}
	})

	t.Run("other RuntimeClass untouched", func(t *testing.T) {
		p := cciPod("runc-pod", map[string]string{"coordinator.cci.io/image-replacement": r26Example2, "shm.cci.io/sise": "x"}, "nginx")
		rc := "runc"
		p.Spec.RuntimeClassName = &rc
		got, msg := w.admit(t, p)
		if msg != "" || got.Spec.Containers[0].Image != "nginx" || len(got.Annotations) != 2 {
			t.Errorf("runc pod: refusal %q, image %q, annotations %v", msg, got.Spec.Containers[0].Image, got.Annotations)
		}
		p.Spec.RuntimeClassName = nil
		if got, msg := w.admit(t, p); msg != "" || got.Spec.Containers[0].Image != "nginx" {
			t.Errorf("pod without RuntimeClass: refusal %q, image %q", msg, got.Spec.Containers[0].Image)
		}
	})

	t.Run("UPDATE and kubectl debug", func(t *testing.T) {
		chain := `[{"repositoryPrefix":"","replaceWith":"a.example/m"},{"repositoryPrefix":"a.example/m","replaceWith":"b.example/n"}]`
		stored, msg := w.admit(t, cciPod("upd", map[string]string{"coordinator.cci.io/image-replacement": chain}, "nginx"))
		if msg != "" {
			t.Fatal(msg)
		}
		upd := stored.DeepCopy()
		upd.Labels = map[string]string{"touched": "yes"}
		resp, got := w.review(t, "/mutate-pods", admissionRequest(t, admissionv1.Update, "", upd, stored))
		if !resp.Allowed || got.Spec.Containers[0].Image != "a.example/m/nginx" {
			t.Errorf("UPDATE: allowed %v, image %q (replaced twice?)", resp.Allowed, got.Spec.Containers[0].Image)
		}
		debug := stored.DeepCopy()
		debug.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox:1.36"}}}
		resp, got = w.review(t, "/mutate-pods", admissionRequest(t, admissionv1.Update, "ephemeralcontainers", debug, stored))
		if want := []string{"a.example/m/nginx", "ephemeral:a.example/m/busybox:1.36"}; !resp.Allowed || strings.Join(images(got), " ") != strings.Join(want, " ") {
			t.Errorf("kubectl debug: allowed %v, images %q, want %q", resp.Allowed, images(got), want)
		}
		if resp, _ := w.review(t, "/validate-pods", admissionRequest(t, admissionv1.Update, "ephemeralcontainers", got, stored)); !resp.Allowed {
			t.Errorf("validate kubectl debug: %v", resp.Result)
		}
	})

	logs := w.log()
	for _, want := range []string{`msg="image replaced" component=cci-webhook pod=tenant-a/r26 uid=`, `operation=CREATE user=tenant-a container=c1 from=nginx:latest to=registry.example/org1/nginx:latest`,
		`msg=denied component=cci-webhook pod=tenant-a/bad`} {
		if !strings.Contains(logs, want) {
			t.Errorf("webhook log lacks %q", want)
		}
	}
	if err := w.stop(t); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	if logs := w.log(); !strings.Contains(logs, "shutting down: reviews in flight complete") || !strings.Contains(logs, "msg=stopped") {
		t.Errorf("webhook log does not show a graceful stop:\n%s", logs)
	}
}

// TestWebhookCertReload: a renewed certificate (the Secret's files swapped)
// is served without a restart.
func TestWebhookCertReload(t *testing.T) {
	w := startWebhook(t)
	serial := func() int64 {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(w.URL, "https://"), &tls.Config{RootCAs: w.ca.pool})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if pool := x509.NewCertPool(); !pool.AppendCertsFromPEM(w.caBundle()) {
		t.Fatal("caBundle is not a PEM certificate")
	}
	if s := serial(); s != 100 {
		t.Fatalf("serving serial %d, want 100", s)
	}
	w.ca.issue(t, 101, w.certFile, w.keyFile)
	if !waitFor(30*time.Second, func() bool { return serial() == 101 }) {
		t.Fatalf("still serving serial %d 30s after the files changed", serial())
	}
	resp, err := w.client.Get(w.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after reload: %v %v", resp, err)
	}
	resp.Body.Close()
}
