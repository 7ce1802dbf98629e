// Package server serves package admission's decisions as Kubernetes
// admission webhooks, over HTTPS, with controller-runtime's webhook server
// (TLS, certificate reload, AdmissionReview decoding and JSON patches are
// the library's). It is the wiring of cmd/cci-webhook, not a place for
// policy: every decision about a pod is in package admission.
//
// Endpoints: MutatePath (Mutate, for CREATE and UPDATE of pods and the
// pods/ephemeralcontainers subresource), ValidatePath (Validate, same
// operations) and /healthz (ok while a certificate is loaded). Pods of other
// RuntimeClasses are allowed unchanged.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	cradmission "sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Paths the webhook configurations (packaging/webhook) point at.
const (
	MutatePath   = "/mutate-pods"
	ValidatePath = "/validate-pods"
	HealthzPath  = "/healthz"
)

// Config is what the command line sets.
type Config struct {
	Listen   string // host:port, e.g. ":9443"
	CertFile string // PEM certificate (chain), reloaded when it changes
	KeyFile  string // PEM private key, reloaded with the certificate
	// RuntimeClasses are the RuntimeClasses whose handler is cci: pods with
	// one of them as spec.runtimeClassName are cci pods.
	RuntimeClasses []string
}

// Check validates c, naming the flag and what is allowed.
func (c Config) Check() error {
	if _, _, err := splitListen(c.Listen); err != nil {
		return err
	}
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("--tls-cert-file and --tls-key-file are required: the API server only calls webhooks over HTTPS")
	}
	if len(c.RuntimeClasses) == 0 {
		return errors.New("--runtime-class is empty; allowed: RuntimeClass names separated by commas, e.g. cci")
	}
	for _, rc := range c.RuntimeClasses {
		if errs := validation.IsDNS1123Subdomain(rc); len(errs) > 0 {
			return fmt.Errorf("--runtime-class %q is not a RuntimeClass name: %v", rc, errs)
		}
	}
	return nil
}

func splitListen(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("--listen %q is not allowed; allowed: [host]:port with a port from 1 to 65535, e.g. :9443", s)
	}
	return host, port, nil
}

// Run serves the webhooks until ctx is cancelled, then shuts the server down
// gracefully (in-flight reviews complete). It returns an error when the
// certificate cannot be loaded or the address cannot be bound.
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	if err := c.Check(); err != nil {
		return err
	}
	host, port, _ := splitListen(c.Listen)
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))

	certs, err := certwatcher.New(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("loading TLS certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchDone := make(chan error, 1)
	go func() { watchDone <- certs.Start(ctx) }()

	health := &healthz.Handler{Checks: map[string]healthz.Checker{
		"tls": func(*http.Request) error {
			if cert, _ := certs.GetCertificate(nil); cert == nil {
				return errors.New("no TLS certificate loaded")
			}
			return nil
		},
	}}
	mux := http.NewServeMux()
	mux.Handle(HealthzPath, http.StripPrefix(HealthzPath, health))
	mux.Handle(HealthzPath+"/", http.StripPrefix(HealthzPath, health))

	srv := webhook.NewServer(webhook.Options{
		Host:       host,
		Port:       port,
		WebhookMux: mux,
		TLSOpts: []func(*tls.Config){func(t *tls.Config) {
			t.GetCertificate = certs.GetCertificate
			t.MinVersion = tls.VersionTLS12
		}},
	})
	hooks, err := Handlers(c.RuntimeClasses, log)
	if err != nil {
		return err
	}
	for path, h := range hooks {
		srv.Register(path, h)
	}
	log.Info("serving", "listen", c.Listen, "runtime_classes", c.RuntimeClasses,
		"mutate", MutatePath, "validate", ValidatePath, "cert", c.CertFile, "key", c.KeyFile)
	err = srv.Start(ctx)
	cancel()
	if werr := <-watchDone; werr != nil && err == nil {
		err = fmt.Errorf("watching TLS certificate: %w", werr)
	}
	return err
}

// Handlers returns the two webhooks by path, for a server or a test.
func Handlers(runtimeClasses []string, log *slog.Logger) (map[string]http.Handler, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building scheme: %w", err)
	}
	dec := cradmission.NewDecoder(scheme)
	mutate := cradmission.WithDefaulter[*corev1.Pod](scheme, &mutator{runtimeClasses: runtimeClasses, decoder: dec, log: log})
	validate := cradmission.WithValidator[*corev1.Pod](scheme, &validator{runtimeClasses: runtimeClasses, log: log})
	return map[string]http.Handler{MutatePath: mutate, ValidatePath: validate}, nil
}
