package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cci-shim/cci-shim/admission"
	"github.com/cci-shim/cci-shim/sandbox"
)

func pod(runtimeClass string, ann map[string]string, image string) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: ann},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	if runtimeClass != "" {
		p.Spec.RuntimeClassName = &runtimeClass
	}
	return p
}

// review posts an AdmissionReview as the API server sends it and returns
// the response and the object with the response's patch applied.
func review(t *testing.T, url string, op admissionv1.Operation, obj, old *corev1.Pod) (*admissionv1.AdmissionResponse, *corev1.Pod) {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	req := &admissionv1.AdmissionRequest{
		UID: types.UID("11111111-2222-3333-4444-555555555555"), Operation: op,
		Kind:     metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Name:     obj.Name, Namespace: obj.Namespace,
		Object: runtime.RawExtension{Raw: raw},
	}
	if old != nil {
		oldRaw, _ := json.Marshal(old)
		req.OldObject = runtime.RawExtension{Raw: oldRaw}
	}
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &out); err != nil || out.Response == nil {
		t.Fatalf("response %s: %v", b, err)
	}
	if out.Response.UID != req.UID {
		t.Errorf("response UID %q, want %q", out.Response.UID, req.UID)
	}
	patched := raw
	if len(out.Response.Patch) > 0 {
		p, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatalf("patch %s: %v", out.Response.Patch, err)
		}
		if patched, err = p.Apply(raw); err != nil {
			t.Fatalf("applying patch %s: %v", out.Response.Patch, err)
		}
	}
	var got corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	return out.Response, &got
}

func TestHandlers(t *testing.T) {
	hooks, err := Handlers([]string{"cci", "cci-gpu"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for p, h := range hooks {
		mux.Handle(p, h)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	rules := map[string]string{admission.AnnotationImageReplacement: `[{"repositoryPrefix":"","replaceWith":"registry.example/org1"}]`}

	resp, got := review(t, srv.URL+MutatePath, admissionv1.Create, pod("cci", rules, "nginx:latest"), nil)
	if !resp.Allowed || got.Spec.Containers[0].Image != "registry.example/org1/nginx:latest" ||
		got.Annotations[sandbox.AnnotationContainers] != `[{"name":"app","init":false}]` {
		t.Errorf("mutate cci pod: allowed %v, image %q, annotations %v", resp.Allowed, got.Spec.Containers[0].Image, got.Annotations)
	}
	if resp, _ := review(t, srv.URL+ValidatePath, admissionv1.Create, got, nil); !resp.Allowed {
		t.Errorf("validate mutated pod: %v", resp.Result)
	}
	if _, gpuPod := review(t, srv.URL+MutatePath, admissionv1.Create, pod("cci-gpu", rules, "nginx"), nil); gpuPod.Spec.Containers[0].Image != "registry.example/org1/nginx" {
		t.Errorf("pod of the second cci RuntimeClass: image %q", gpuPod.Spec.Containers[0].Image)
	}

	// UPDATE: the stored image is not replaced again.
	upd := got.DeepCopy()
	upd.Labels = map[string]string{"a": "b"}
	if resp, again := review(t, srv.URL+MutatePath, admissionv1.Update, upd, got); !resp.Allowed || again.Spec.Containers[0].Image != got.Spec.Containers[0].Image {
		t.Errorf("mutate UPDATE: allowed %v, image %q", resp.Allowed, again.Spec.Containers[0].Image)
	}

	// Another RuntimeClass: untouched, whatever it carries.
	other := pod("runc", map[string]string{"shm.cci.io/sise": "x"}, "nginx")
	if resp, got := review(t, srv.URL+MutatePath, admissionv1.Create, other, nil); !resp.Allowed || len(resp.Patch) != 0 || got.Spec.Containers[0].Image != "nginx" {
		t.Errorf("mutate other pod: allowed %v, patch %s", resp.Allowed, resp.Patch)
	}
	if resp, _ := review(t, srv.URL+ValidatePath, admissionv1.Create, other, nil); !resp.Allowed {
		t.Errorf("validate other pod: %v", resp.Result)
	}

	bad := pod("cci", map[string]string{"shm.cci.io/sise": "1Gi"}, "nginx")
	resp, _ = review(t, srv.URL+ValidatePath, admissionv1.Create, bad, nil)
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusForbidden ||
		!strings.Contains(resp.Result.Message, `annotation "shm.cci.io/sise" is not a platform annotation`) {
		t.Errorf("validate bad pod: allowed %v, result %+v", resp.Allowed, resp.Result)
	}
	badRules := pod("cci", map[string]string{admission.AnnotationImageReplacement: `[{"repositoryPrefix":"x","replaceWith":"x"}]`}, "nginx")
	resp, _ = review(t, srv.URL+MutatePath, admissionv1.Create, badRules, nil)
	if resp.Allowed || !strings.Contains(resp.Result.Message, `replaceWith "x" equals repositoryPrefix`) {
		t.Errorf("mutate bad rules: allowed %v, result %+v", resp.Allowed, resp.Result)
	}
}

func TestConfigCheck(t *testing.T) {
	ok := Config{Listen: ":9443", CertFile: "c", KeyFile: "k", RuntimeClasses: []string{"cci"}}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Listen = "9443" }, `--listen "9443" is not allowed`},
		{func(c *Config) { c.Listen = ":0" }, `--listen ":0" is not allowed`},
		{func(c *Config) { c.Listen = "127.0.0.1:70000" }, `--listen "127.0.0.1:70000" is not allowed`},
		{func(c *Config) { c.CertFile = "" }, "--tls-cert-file and --tls-key-file are required"},
		{func(c *Config) { c.RuntimeClasses = []string{"cci", "Bad_Name"} }, `--runtime-class "Bad_Name" is not a RuntimeClass name`},
		{func(c *Config) { c.RuntimeClasses = nil }, `--runtime-class is empty`},
	} {
		c := ok
		tc.mod(&c)
		if err := c.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%+v) = %v; want %q", c, err, tc.want)
		}
	}
}
