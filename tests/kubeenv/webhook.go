//go:build linux

package kubeenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// Webhook says where an admission webhook of a test listens and what it
// sees. The API server calls URL (https, on 127.0.0.1) and trusts the
// serving certificate through CABundle.
type Webhook struct {
	Name     string // the configuration's name, and (with ".cci.io") the webhook's
	URL      string // e.g. https://127.0.0.1:PORT/mutate
	CABundle []byte // PEM; the cluster CA if nil (see ServingCert)
	// Rules default to CREATE of pods.
	Rules []admissionregv1.RuleWithOperations
	// FailurePolicy defaults to Fail: a webhook that cannot be reached
	// refuses the request, so a test never passes by bypassing it.
	FailurePolicy *admissionregv1.FailurePolicyType
	// NamespaceSelector limits the webhook to some namespaces (nil: all).
	NamespaceSelector *metav1.LabelSelector
}

func (w Webhook) defaults(c *Cluster) ([]admissionregv1.RuleWithOperations, *admissionregv1.FailurePolicyType, []byte, *admissionregv1.SideEffectClass) {
	rules := w.Rules
	if rules == nil {
		rules = []admissionregv1.RuleWithOperations{{
			Operations: []admissionregv1.OperationType{admissionregv1.Create},
			Rule:       admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}}
	}
	fail := w.FailurePolicy
	if fail == nil {
		f := admissionregv1.Fail
		fail = &f
	}
	ca := w.CABundle
	if ca == nil {
		ca = c.CA.CertPEM
	}
	none := admissionregv1.SideEffectClassNone
	return rules, fail, ca, &none
}

// RegisterMutatingWebhook creates a MutatingWebhookConfiguration for w.
// The API server starts calling it within about a second; a test that
// needs it should poll for its effect (a dry-run create works).
func (c *Cluster) RegisterMutatingWebhook(ctx context.Context, w Webhook) (*admissionregv1.MutatingWebhookConfiguration, error) {
	rules, fail, ca, side := w.defaults(c)
	url := w.URL
	cfg := &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: w.Name},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    w.Name + ".cci.io",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   rules,
			FailurePolicy:           fail,
			NamespaceSelector:       w.NamespaceSelector,
			SideEffects:             side,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	out, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating MutatingWebhookConfiguration %s: %w", w.Name, err)
	}
	return out, nil
}

// RegisterValidatingWebhook creates a ValidatingWebhookConfiguration for w.
func (c *Cluster) RegisterValidatingWebhook(ctx context.Context, w Webhook) (*admissionregv1.ValidatingWebhookConfiguration, error) {
	rules, fail, ca, side := w.defaults(c)
	url := w.URL
	cfg := &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: w.Name},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:                    w.Name + ".cci.io",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   rules,
			FailurePolicy:           fail,
			NamespaceSelector:       w.NamespaceSelector,
			SideEffects:             side,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	out, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating ValidatingWebhookConfiguration %s: %w", w.Name, err)
	}
	return out, nil
}

// ServingCert issues a serving certificate for hosts (default 127.0.0.1)
// signed by the cluster CA, which the API server trusts through a Webhook
// with a nil CABundle.
func (c *Cluster) ServingCert(hosts ...string) (tls.Certificate, KeyPair, error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	kp, err := c.CA.Issue(hosts[0], nil, hosts...)
	if err != nil {
		return tls.Certificate{}, KeyPair{}, err
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return tls.Certificate{}, KeyPair{}, fmt.Errorf("loading serving certificate: %w", err)
	}
	return cert, kp, nil
}

// pointWebhooks rewrites the webhooks of a decoded webhook configuration:
// each clientConfig points at baseURL plus the path of its service
// reference and trusts caBundle (packaged manifests carry a placeholder the
// operator fills in), and, when nsSelector is not nil, each webhook judges
// only the namespaces it selects.
func pointWebhooks(raw map[string]any, baseURL string, caBundle []byte, nsSelector *metav1.LabelSelector) error {
	hooks, _ := raw["webhooks"].([]any)
	for _, h := range hooks {
		hook, ok := h.(map[string]any)
		if !ok {
			return fmt.Errorf("a webhook that is not an object: %v", h)
		}
		cc, _ := hook["clientConfig"].(map[string]any)
		svc, ok := cc["service"].(map[string]any)
		if !ok {
			return fmt.Errorf("webhook %v has no service reference", hook["name"])
		}
		url := baseURL
		if p, ok := svc["path"].(string); ok {
			url += p
		}
		hook["clientConfig"] = map[string]any{"url": url, "caBundle": caBundle}
		if nsSelector != nil {
			hook["namespaceSelector"] = nsSelector
		}
	}
	return nil
}

// createFromJSON creates the object doc holds through api and returns the
// func that deletes it.
func createFromJSON[T any, PT interface {
	*T
	GetName() string
}](ctx context.Context, doc []byte, api interface {
	Create(context.Context, PT, metav1.CreateOptions) (PT, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
}) (func(), error) {
	obj := PT(new(T))
	if err := json.Unmarshal(doc, obj); err != nil {
		return nil, err
	}
	if _, err := api.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating %s: %w", obj.GetName(), err)
	}
	name := obj.GetName()
	return func() { _ = api.Delete(context.Background(), name, metav1.DeleteOptions{}) }, nil
}

// RegisterWebhookManifests creates the Mutating- and
// ValidatingWebhookConfigurations of the YAML documents at path (such as
// packaging/webhook/webhook-configurations.yaml) with each webhook's
// clientConfig pointed at baseURL plus the path of its service reference,
// trusting caBundle, and, when nsSelector is not nil, limited to the
// namespaces it selects (so that one test's webhook does not judge another
// test's pods). The returned func deletes them.
func (c *Cluster) RegisterWebhookManifests(ctx context.Context, path, baseURL string, caBundle []byte, nsSelector *metav1.LabelSelector) (remove func(), err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading webhook manifests: %w", err)
	}
	var undo []func()
	remove = func() {
		for _, u := range undo {
			u()
		}
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			remove()
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if raw == nil {
			continue
		}
		if err := pointWebhooks(raw, baseURL, caBundle, nsSelector); err != nil {
			remove()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		doc, _ := json.Marshal(raw)
		var del func()
		api := c.Client.AdmissionregistrationV1()
		switch raw["kind"] {
		case "MutatingWebhookConfiguration":
			del, err = createFromJSON[admissionregv1.MutatingWebhookConfiguration](ctx, doc, api.MutatingWebhookConfigurations())
		case "ValidatingWebhookConfiguration":
			del, err = createFromJSON[admissionregv1.ValidatingWebhookConfiguration](ctx, doc, api.ValidatingWebhookConfigurations())
		default:
			err = fmt.Errorf("unexpected kind %v", raw["kind"])
		}
		if err != nil {
			remove()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		undo = append(undo, del)
	}
	if len(undo) == 0 {
		return nil, fmt.Errorf("%s: no webhook configuration", path)
	}
	return remove, nil
}
