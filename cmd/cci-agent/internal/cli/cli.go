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

	"github.com/pelletier/go-toml/v2"

	"github.com/cci-shim/cci-shim/gpu"
)

// DefaultConfigPath is the node configuration file.
const DefaultConfigPath = "/etc/cci-shim/config.toml"

const usage = `cci-agent — the cci-shim node agent.

Usage:
  cci-agent [--config FILE] <command> [flags]

Commands:
  gpus      print the node's GPU inventory and which pod holds each GPU
            flags: --json          machine-readable output
                   --nvml          read the real driver through NVML (libnvidia-ml.so.1),
                                   whatever [gpu] inventory says
                   --fake FILE     read a JSON fixture instead (development hosts)

Global flags:
  --config FILE   node configuration (default /etc/cci-shim/config.toml); its [gpu]
                  section chooses the inventory ("nvml", "fake" with fake_fixture,
                  or "none"), the ledger's state_dir and the per-version driver
                  directories ([gpu.drivers."<version>"] lib_dir, bin_dir).
  -h, --help      this help

The GPU inventory is never chosen silently: a configured NVML that does not load
is an error, not a fallback to the fake.
`

// nodeConfig is the part of the node configuration the agent reads so far.
type nodeConfig struct {
	GPU gpu.Config `toml:"gpu"`
}

// Run executes cci-agent with args (without the program name) and returns the
// exit status: 0 ok, 1 failure, 2 usage error.
func Run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cci-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := fs.String("config", DefaultConfigPath, "node configuration file")
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
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cci-agent: unknown command %q; run cci-agent --help\n", rest[0])
		return 2
	}
}

// loadConfig reads path; a missing file is tolerated only when optional.
func loadConfig(path string, optional bool) (nodeConfig, error) {
	var c nodeConfig
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && optional {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("reading config: %w", err)
	}
	if err := toml.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parsing config %s: %w", path, err)
	}
	return c, nil
}
