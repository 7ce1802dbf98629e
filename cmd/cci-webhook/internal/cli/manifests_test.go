package cli

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/cci-shim/cci-shim/cmd/cci-webhook/internal/server"
)

const packaging = "../../../../packaging/webhook"

// documents splits a manifest file and decodes each document strictly into
// the type its kind names, so a misspelt field is a test failure.
func documents(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(packaging, file))
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("CA_BUNDLE"), []byte(base64.StdEncoding.EncodeToString([]byte("pem"))))
	out := map[string]any{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var obj any
		switch meta.Kind {
		case "Namespace":
			obj = &corev1.Namespace{}
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "Service":
			obj = &corev1.Service{}
		case "PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "MutatingWebhookConfiguration":
			obj = &admissionregistrationv1.MutatingWebhookConfiguration{}
		case "ValidatingWebhookConfiguration":
			obj = &admissionregistrationv1.ValidatingWebhookConfiguration{}
		default:
			t.Fatalf("%s: unexpected kind %q", file, meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %s: %v", file, meta.Kind, err)
		}
		out[meta.Kind] = obj
	}
	return out
}

// TestManifests: the packaged Deployment, Service and webhook
// configurations agree with the binary (flags, port, paths, TLS files) and
// with each other.
func TestManifests(t *testing.T) {
	app := documents(t, "cci-webhook.yaml")
	hooks := documents(t, "webhook-configurations.yaml")
	dep := app["Deployment"].(*appsv1.Deployment)
	svc := app["Service"].(*corev1.Service)
	c := dep.Spec.Template.Spec.Containers[0]

	// The flags exist and are valid: Run parses them before --version.
	var out, errb bytes.Buffer
	if code := Run(append(slices.Clone(c.Args), "--version"), &out, &errb); code != 0 {
		t.Errorf("Deployment args %q: exit %d: %s", c.Args, code, errb.String())
	}
	arg := func(name string) string {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				return strings.TrimSpace(strings.Split(v, "#")[0])
			}
		}
		t.Fatalf("Deployment args lack --%s", name)
		return ""
	}
	if arg("listen") != ":9443" || c.Ports[0].ContainerPort != 9443 || svc.Spec.Ports[0].TargetPort.StrVal != c.Ports[0].Name {
		t.Errorf("listen %s, container port %v, service target %v: they must agree", arg("listen"), c.Ports[0], svc.Spec.Ports[0].TargetPort)
	}
	mount := c.VolumeMounts[0]
	vol := dep.Spec.Template.Spec.Volumes[0]
	if filepath.Dir(arg("tls-cert-file")) != mount.MountPath || filepath.Dir(arg("tls-key-file")) != mount.MountPath ||
		vol.Name != mount.Name || vol.Secret == nil || vol.Secret.SecretName != "cci-webhook-tls" {
		t.Errorf("TLS files %s %s are not in the Secret volume %+v at %s", arg("tls-cert-file"), arg("tls-key-file"), vol, mount.MountPath)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p.HTTPGet.Path != server.HealthzPath || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe %+v: want HTTPS %s", p.HTTPGet, server.HealthzPath)
		}
	}
	if dep.Spec.Template.Spec.RuntimeClassName != nil {
		t.Error("the webhook must not run in the RuntimeClass it admits")
	}

	mw := hooks["MutatingWebhookConfiguration"].(*admissionregistrationv1.MutatingWebhookConfiguration).Webhooks[0]
	vw := hooks["ValidatingWebhookConfiguration"].(*admissionregistrationv1.ValidatingWebhookConfiguration).Webhooks[0]
	for _, w := range []struct {
		name, path string
		cc         admissionregistrationv1.WebhookClientConfig
		rules      []admissionregistrationv1.RuleWithOperations
		fail       *admissionregistrationv1.FailurePolicyType
		conds      []admissionregistrationv1.MatchCondition
	}{
		{mw.Name, server.MutatePath, mw.ClientConfig, mw.Rules, mw.FailurePolicy, mw.MatchConditions},
		{vw.Name, server.ValidatePath, vw.ClientConfig, vw.Rules, vw.FailurePolicy, vw.MatchConditions},
	} {
		s := w.cc.Service
		if s == nil || *s.Path != w.path || s.Name != svc.Name || s.Namespace != svc.Namespace || *s.Port != svc.Spec.Ports[0].Port {
			t.Errorf("%s: client config %+v does not reach %s on Service %s/%s", w.name, s, w.path, svc.Namespace, svc.Name)
		}
		if len(w.rules) != 1 || !slices.Equal(w.rules[0].Resources, []string{"pods", "pods/ephemeralcontainers"}) {
			t.Errorf("%s: rules %+v", w.name, w.rules)
		}
		if w.fail == nil || *w.fail != admissionregistrationv1.Fail {
			t.Errorf("%s: failurePolicy must be Fail", w.name)
		}
		checkMatchCondition(t, w.name, w.conds, strings.Split(arg("runtime-class"), ","))
	}
	if mw.ReinvocationPolicy == nil || *mw.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy {
		t.Error("mutating webhook: reinvocationPolicy must be Never (R26: at most one replacement)")
	}
}

// checkMatchCondition compiles the CEL expression as the API server would
// (object is the pod as a map) and evaluates it on pods in and out of the
// RuntimeClass.
func checkMatchCondition(t *testing.T, hook string, conds []admissionregistrationv1.MatchCondition, runtimeClasses []string) {
	t.Helper()
	if len(conds) != 1 {
		t.Fatalf("%s: want one matchCondition, got %+v", hook, conds)
	}
	env, err := cel.NewEnv(cel.Variable("object", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(conds[0].Expression)
	if iss.Err() != nil {
		t.Fatalf("%s: %q: %v", hook, conds[0].Expression, iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	type match struct {
		spec map[string]any
		want bool
	}
	cases := []match{{map[string]any{"runtimeClassName": "runc"}, false}, {map[string]any{}, false}}
	for _, rc := range runtimeClasses {
		cases = append(cases, match{map[string]any{"runtimeClassName": rc}, true})
	}
	for _, tc := range cases {
		v, _, err := prg.Eval(map[string]any{"object": map[string]any{"spec": tc.spec}})
		if err != nil || v.Value() != tc.want {
			t.Errorf("%s: %q on spec %v = %v, %v; want %v", hook, conds[0].Expression, tc.spec, v, err, tc.want)
		}
	}
}
