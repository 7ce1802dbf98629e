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
	point := func(cc *admissionregv1.WebhookClientConfig) error {
		if cc.Service == nil {
			return fmt.Errorf("%s: a webhook without a service reference", path)
		}
		url := baseURL
		if cc.Service.Path != nil {
			url += *cc.Service.Path
		}
		cc.Service, cc.URL, cc.CABundle = nil, &url, caBundle
		return nil
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
		// caBundle is the operator's to fill in (a placeholder in packaged
		// manifests); it is replaced below.
		if hooks, ok := raw["webhooks"].([]any); ok {
			for _, h := range hooks {
				if cc, ok := h.(map[string]any)["clientConfig"].(map[string]any); ok {
					delete(cc, "caBundle")
				}
			}
		}
		doc, _ := json.Marshal(raw)
		switch raw["kind"] {
		case "MutatingWebhookConfiguration":
			var cfg admissionregv1.MutatingWebhookConfiguration
			if err := json.Unmarshal(doc, &cfg); err != nil {
				remove()
				return nil, fmt.Errorf("decoding %s: %w", path, err)
			}
			for i := range cfg.Webhooks {
				if err := point(&cfg.Webhooks[i].ClientConfig); err != nil {
					remove()
					return nil, err
				}
				if nsSelector != nil {
					cfg.Webhooks[i].NamespaceSelector = nsSelector
				}
			}
			api := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
			if _, err := api.Create(ctx, &cfg, metav1.CreateOptions{}); err != nil {
				remove()
				return nil, fmt.Errorf("creating MutatingWebhookConfiguration %s from %s: %w", cfg.Name, path, err)
			}
			undo = append(undo, func() { _ = api.Delete(context.Background(), cfg.Name, metav1.DeleteOptions{}) })
		case "ValidatingWebhookConfiguration":
			var cfg admissionregv1.ValidatingWebhookConfiguration
			if err := json.Unmarshal(doc, &cfg); err != nil {
				remove()
				return nil, fmt.Errorf("decoding %s: %w", path, err)
			}
			for i := range cfg.Webhooks {
				if err := point(&cfg.Webhooks[i].ClientConfig); err != nil {
					remove()
					return nil, err
				}
				if nsSelector != nil {
					cfg.Webhooks[i].NamespaceSelector = nsSelector
				}
			}
			api := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
			if _, err := api.Create(ctx, &cfg, metav1.CreateOptions{}); err != nil {
				remove()
				return nil, fmt.Errorf("creating ValidatingWebhookConfiguration %s from %s: %w", cfg.Name, path, err)
			}
			undo = append(undo, func() { _ = api.Delete(context.Background(), cfg.Name, metav1.DeleteOptions{}) })
		default:
			remove()
			return nil, fmt.Errorf("%s: unexpected kind %v", path, raw["kind"])
		}
	}
	if len(undo) == 0 {
		return nil, fmt.Errorf("%s: no webhook configuration", path)
	}
	return remove, nil
}
