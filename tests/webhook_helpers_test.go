package tests

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// Helpers of the cci-webhook tests: the real binary over HTTPS, fed
// AdmissionReview requests as the API server sends them.

// testCA signs the webhook's serving certificates, as an operator's CA would.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cci-webhook test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue writes a serving certificate for 127.0.0.1 and the Service's DNS
// name with the given serial to certFile/keyFile, atomically (as a Secret
// volume update swaps files).
func (ca *testCA) issue(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "cci-webhook.cci-system.svc"},
		DNSNames:    []string{"cci-webhook.cci-system.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, block *pem.Block) {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(keyFile, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	write(certFile, &pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// webhookProc is a running cci-webhook binary.
type webhookProc struct {
	URL               string // https://127.0.0.1:PORT
	cmd               *exec.Cmd
	logPath           string
	ca                *testCA
	certFile, keyFile string
	client            *http.Client
	exited            chan struct{}
	waitErr           error
}

// webhookBinary finds bin/cci-webhook (CCI_BIN_DIR, else <repo>/bin): built
// by `make build`.
func webhookBinary(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CCI_BIN_DIR")
	if dir == "" {
		wd, _ := os.Getwd()
		dir = filepath.Join(filepath.Dir(wd), "bin") // tests/ is one level below the repo root
	}
	p := filepath.Join(dir, "cci-webhook")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cci-webhook binary: %v (run make build)", err)
		}
		t.Skipf("cci-webhook binary: %v (run make build; with CI=true this fails)", err)
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startWebhook runs the binary on a free 127.0.0.1 port with a certificate
// from a fresh CA, waits for /healthz and stops it (SIGTERM) at cleanup.
func startWebhook(t *testing.T, extraArgs ...string) *webhookProc {
	t.Helper()
	bin := webhookBinary(t)
	dir := t.TempDir()
	w := &webhookProc{ca: newTestCA(t), certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key"),
		logPath: filepath.Join(dir, "webhook.log"), exited: make(chan struct{})}
	w.ca.issue(t, 100, w.certFile, w.keyFile)
	w.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.ca.pool}}}
	logFile, err := os.Create(w.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		w.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
		args := append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--tls-cert-file", w.certFile, "--tls-key-file", w.keyFile}, extraArgs...)
		w.cmd = exec.Command(bin, args...)
		w.cmd.Stdout, w.cmd.Stderr = logFile, logFile
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.exited = make(chan struct{})
		go func() { w.waitErr = w.cmd.Wait(); close(w.exited) }()
		if w.waitHealthy(30 * time.Second) {
			break
		}
		w.kill()
		if attempt == 2 || !strings.Contains(w.log(), "address already in use") {
			t.Fatalf("cci-webhook did not become healthy:\n%s", w.log())
		}
	}
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.kill()
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("cci-webhook log:\n%s", w.log())
		}
	})
	return w
}

func (w *webhookProc) waitHealthy(timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-w.exited:
			return false
		default:
		}
		resp, err := w.client.Get(w.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
	}
	return false
}

func (w *webhookProc) kill() {
	_ = w.cmd.Process.Kill()
	<-w.exited
}

// stop sends SIGTERM and returns the exit error (nil for status 0).
func (w *webhookProc) stop(t *testing.T) error {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.exited:
		return w.waitErr
	case <-time.After(30 * time.Second):
		w.kill()
		return errors.New("cci-webhook did not exit within 30s of SIGTERM")
	}
}

// caBundle is the PEM of the CA that signed the webhook's certificate: the
// caBundle of a webhook configuration registered with a test API server
// (clientConfig.url = w.URL + "/mutate-pods" or "/validate-pods").
func (w *webhookProc) caBundle() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: w.ca.cert.Raw})
}

func (w *webhookProc) log() string {
	b, _ := os.ReadFile(w.logPath)
	return string(b)
}

// admissionRequest is a pod request as the API server builds it.
func admissionRequest(t *testing.T, op admissionv1.Operation, subresource string, pod, old *corev1.Pod) *admissionv1.AdmissionRequest {
	t.Helper()
	marshal := func(p *corev1.Pod) runtime.RawExtension {
		if p == nil {
			return runtime.RawExtension{}
		}
		c := p.DeepCopy()
		c.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	gvk := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	gvr := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	opts := map[admissionv1.Operation]string{admissionv1.Create: "CreateOptions", admissionv1.Update: "UpdateOptions"}[op]
	return &admissionv1.AdmissionRequest{
		UID:  types.UID(fmt.Sprintf("%08x-0000-4000-8000-000000000000", time.Now().UnixNano()&0xffffffff)),
		Kind: gvk, Resource: gvr, SubResource: subresource,
		RequestKind: &gvk, RequestResource: &gvr, RequestSubResource: subresource,
		Name: pod.Name, Namespace: pod.Namespace, Operation: op,
		UserInfo: authenticationv1.UserInfo{Username: "tenant-a", Groups: []string{"system:authenticated"}},
		Object:   marshal(pod), OldObject: marshal(old),
		DryRun:  new(bool),
		Options: runtime.RawExtension{Raw: []byte(`{"kind":"` + opts + `","apiVersion":"meta.k8s.io/v1"}`)},
	}
}

// review posts req to path and returns the response and req's object with
// the response's JSON patch applied (unchanged when there is none).
func (w *webhookProc) review(t *testing.T, path string, req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, *corev1.Pod) {
	t.Helper()
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := w.client.Post(w.URL+path+"?timeout=10s", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &out); err != nil || out.Response == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d, body %s: %v", path, resp.StatusCode, b, err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response.UID != req.UID {
		t.Errorf("response %s %s uid %q, want admission.k8s.io/v1 AdmissionReview uid %q", out.APIVersion, out.Kind, out.Response.UID, req.UID)
	}
	patched := req.Object.Raw
	if len(out.Response.Patch) > 0 {
		if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Errorf("patch type %v, want JSONPatch", out.Response.PatchType)
		}
		p, err := jsonpatch.DecodePatch(out.Response.Patch)
		if err != nil {
			t.Fatalf("decoding patch %s: %v", out.Response.Patch, err)
		}
		if patched, err = p.Apply(req.Object.Raw); err != nil {
			t.Fatalf("applying patch %s: %v", out.Response.Patch, err)
		}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(patched, &pod); err != nil {
		t.Fatal(err)
	}
	return out.Response, &pod
}

// admit runs a pod through the API server's admission chain as far as cci
// is concerned: the mutating webhook, then the validating one on the
// mutated object. It returns the stored pod, or the refusal message.
func (w *webhookProc) admit(t *testing.T, pod *corev1.Pod) (*corev1.Pod, string) {
	t.Helper()
	resp, mutated := w.review(t, "/mutate-pods", admissionRequest(t, admissionv1.Create, "", pod, nil))
	if !resp.Allowed {
		return nil, resp.Result.Message
	}
	resp, _ = w.review(t, "/validate-pods", admissionRequest(t, admissionv1.Create, "", mutated, nil))
	if !resp.Allowed {
		return nil, resp.Result.Message
	}
	return mutated, ""
}
