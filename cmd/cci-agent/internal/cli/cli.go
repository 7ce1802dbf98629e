// Package cli is cci-agent's command line: flag parsing, node configuration
// loading and the subcommands' output. It is not for node logic, which lives in
// the leaf packages (gpu/, ...); subcommands only wire them together and print.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/cci-shim/cci-shim/config"
)

const usage = `cci-agent — the cci-shim node agent.

Usage:
  cci-agent [--config FILE] <command> [flags]

Commands:
  check     run the node checks (KVM, backend, Kata config, thin pool, cgroups,
            GPUs, state dir); exit status 1 when one fails
            flags: --json          machine-readable output
  serve     the systemd service: /healthz (the node checks) and /metrics
            (Prometheus: pods, stdout and rootfs throttles, log collection,
            GPUs) on --listen (default 127.0.0.1:9477); reconciles the GPU
            ledger against the pods that still exist
  gpus      print the node's GPU inventory and which pod holds each GPU
            flags: --json          machine-readable output
                   --nvml          read the real driver through NVML (libnvidia-ml.so.1),
                                   whatever [gpu] inventory says
                   --fake FILE     read a JSON fixture instead (development hosts)

Global flags:
  --config FILE   node configuration, the same file every pod's shim reads
                  (default $CCI_SHIM_CONFIG, else /etc/cci-shim/config.toml; see
                  packaging/cci-shim/config.toml). Its [gpu] section chooses the
                  inventory ("nvml", "fake" with fake_fixture, or "none"), the
                  ledger's state_dir and the driver directories per version.
  -h, --help      this help

The GPU inventory is never chosen silently: a configured NVML that does not load
is an error, not a fallback to the fake.
`

// Run executes cci-agent with args (without the program name) and returns the
// exit status: 0 ok, 1 failure, 2 usage error.
func Run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cci-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := fs.String("config", "", "node configuration file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch rest[0] {
	case "gpus":
		return runGPUs(rest[1:], *configPath, stdout, stderr, log)
	case "check":
		return runCheck(rest[1:], *configPath, stdout, stderr)
	case "serve":
		return runServe(rest[1:], *configPath, stderr, log)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cci-agent: unknown command %q; run cci-agent --help\n", rest[0])
		return 2
	}
}

// parseFlags parses a subcommand's flags. When it reports !ok, the command
// returns code: 0 after --help, 2 after a usage error (already printed).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}

// loadConfig reads the node configuration. optional: a missing file yields
// the defaults even when named (the gpus command's --nvml and --fake make
// the file unnecessary).
func loadConfig(path string, optional bool) (config.Config, error) {
	c, err := config.Load(path)
	if err != nil && optional && errors.Is(err, fs.ErrNotExist) {
		return config.Load(os.DevNull)
	}
	return c, err
}
