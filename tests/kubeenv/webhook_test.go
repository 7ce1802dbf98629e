//go:build linux

package kubeenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// The packaged webhook configurations, pointed at a test server: every
// webhook's clientConfig is the server's URL plus its service path and the
// test CA, and the namespace selector is the test's.
func TestPointWebhooks(t *testing.T) {
	root, err := e2eenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "packaging", "webhook", "webhook-configurations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"test": "x"}}
	ca := []byte("test CA")
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	hooks := 0
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if raw == nil {
			continue
		}
		if err := pointWebhooks(raw, "https://127.0.0.1:1234", ca, sel); err != nil {
			t.Fatal(err)
		}
		doc, _ := json.Marshal(raw)
		var cfg admissionregv1.ValidatingWebhookConfiguration // the fields checked here are the same in both kinds
		if err := json.Unmarshal(doc, &cfg); err != nil {
			t.Fatal(err)
		}
		for _, h := range cfg.Webhooks {
			hooks++
			cc := h.ClientConfig
			if cc.Service != nil || cc.URL == nil || len(*cc.URL) <= len("https://127.0.0.1:1234/") || string(cc.CABundle) != "test CA" {
				t.Errorf("%s %s: clientConfig %+v, want the test URL with the service's path and the test CA", raw["kind"], h.Name, cc)
			}
			if h.NamespaceSelector == nil || h.NamespaceSelector.MatchLabels["test"] != "x" {
				t.Errorf("%s %s: namespaceSelector %+v", raw["kind"], h.Name, h.NamespaceSelector)
			}
		}
	}
	if hooks < 2 {
		t.Errorf("%d webhooks pointed, want the mutating and the validating one", hooks)
	}
	if err := pointWebhooks(map[string]any{"webhooks": []any{map[string]any{"name": "x", "clientConfig": map[string]any{"url": "https://elsewhere"}}}}, "u", ca, nil); err == nil {
		t.Error("a webhook without a service reference was pointed")
	}
}
