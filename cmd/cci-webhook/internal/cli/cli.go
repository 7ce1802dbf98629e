// Package cli is cci-webhook's command line: flags, logging, signals. It is
// not for admission logic (package admission) or HTTP serving
// (cmd/cci-webhook/internal/server).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cci-shim/cci-shim/admission"
	"github.com/cci-shim/cci-shim/cmd/cci-webhook/internal/server"
	"github.com/cci-shim/cci-shim/internal/version"
)

const usage = `cci-webhook — the cci platform's admission webhook for pods.

For pods whose spec.runtimeClassName is a cci RuntimeClass (--runtime-class) it
  - mutates (` + server.MutatePath + `): replaces images by the pod's
    coordinator.cci.io/image-replacement rules (R26) and writes
    coordinator.cci.io/hostpath-volumes and resources.cci.io/containers,
    which the shim reads (overwriting any value the pod carried);
  - validates (` + server.ValidatePath + `): refuses unknown or malformed *.cci.io/*
    annotations with the shim's own messages, uncovered hostPath volumes (R4),
    pod sizes R5 refuses and /dev/shm sizes over the pod memory (R10).
Other pods are allowed unchanged. ` + server.HealthzPath + ` answers ok while a certificate
is loaded. Everything is served over HTTPS (packaging/webhook has the
Deployment, Service and webhook configurations).

Usage:
  cci-webhook --tls-cert-file FILE --tls-key-file FILE [flags]

Flags:
  --listen ADDR          [host]:port to serve on (default :9443)
  --tls-cert-file FILE   PEM certificate (with chain) for the Service's DNS name
  --tls-key-file FILE    its PEM private key; both files are re-read when they
                         change (a renewed Secret needs no restart)
  --runtime-class NAMES  RuntimeClasses of cci pods, separated by commas: every
                         RuntimeClass whose handler is cci (default cci)
  --log-level LEVEL      debug, info, warn or error (default info)
  --version              print the version and exit
  -h, --help             this help

SIGTERM and SIGINT stop the server gracefully: reviews in flight complete.
`

// Run executes cci-webhook with args (without the program name) and returns
// the exit status: 0 ok, 1 failure, 2 usage error.
func Run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cci-webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var c server.Config
	fs.StringVar(&c.Listen, "listen", ":9443", "")
	fs.StringVar(&c.CertFile, "tls-cert-file", "", "")
	fs.StringVar(&c.KeyFile, "tls-key-file", "", "")
	classes := fs.String("runtime-class", admission.DefaultRuntimeClass, "")
	level := fs.String("log-level", "info", "")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return 2
	}
	c.RuntimeClasses = nil
	for _, rc := range strings.Split(*classes, ",") {
		if rc = strings.TrimSpace(rc); rc != "" {
			c.RuntimeClasses = append(c.RuntimeClasses, rc)
		}
	}
	if *showVersion {
		version.Print(stdout, "cci-webhook")
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cci-webhook: unexpected argument %q; see --help\n", fs.Arg(0))
		return 2
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "cci-webhook: --log-level %q is not allowed; allowed: debug, info, warn, error\n", *level)
		return 2
	}
	if err := c.Check(); err != nil {
		fmt.Fprintf(stderr, "cci-webhook: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})).With("component", "cci-webhook")
	log.Info("starting", "version", version.Get().String())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			log.Info("shutting down: reviews in flight complete", "signal", s.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := server.Run(ctx, c, log); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
