// Package cli is cci-agent's command line: flag parsing, node configuration
// loading and the subcommands' output. It is not for node logic, which lives
// in the leaf packages (checks, metrics, gpu/, ...); subcommands only wire
// them together and print.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/internal/version"
)

const usage = `cci-agent — the cci-shim node agent.

Usage:
  cci-agent [global flags] <command> [flags]
  cci-agent <command> --help
  cci-agent --version

Commands:
  check     run the node checks; exit status 0 all passed, 1 a check failed,
            3 warnings only (2 is a usage error)
  env       the effective node configuration, where it came from, and the
            versions of cci-shim, containerd and the sandbox runtimes
  serve     the systemd service: /healthz and Prometheus /metrics
  gpus      the node's GPU inventory and which pod holds each GPU
  version   print the version (as --version)
  help      this help

Global flags:
  --config FILE             node configuration, the same file every pod's shim
                            reads (default $CCI_SHIM_CONFIG, else
                            /etc/cci-shim/config.toml; the file is required)
  --containerd-config FILE  containerd's config (default /etc/containerd/config.toml);
                            check and env read it through "containerd config dump"
  -h, --help                this help
  -v, --version             cci-shim's version and revision
`

// globals are the flags before the command.
type globals struct {
	configPath           string
	containerdConfigPath string
}

// Run executes cci-agent with args (without the program name) and returns the
// exit status: 0 ok, 1 failure, 2 usage error (check adds 3: warnings).
func Run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cci-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	var g globals
	var showVersion bool
	fs.StringVar(&g.configPath, "config", "", "")
	fs.StringVar(&g.containerdConfigPath, "containerd-config", checks.DefaultContainerdConfig, "")
	fs.BoolVar(&showVersion, "version", false, "")
	fs.BoolVar(&showVersion, "v", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintln(stderr, "run cci-agent --help for usage")
		return 2
	}
	if showVersion {
		version.Print(stdout, "cci-agent")
		return 0
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	warnLog := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch rest[0] {
	case "check":
		return runCheck(rest[1:], g, stdout, stderr)
	case "env":
		return runEnv(rest[1:], g, stdout, stderr)
	case "serve":
		return runServe(rest[1:], g, stdout, stderr)
	case "gpus":
		return runGPUs(rest[1:], g, stdout, stderr, warnLog)
	case "version":
		version.Print(stdout, "cci-agent")
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cci-agent: unknown command %q; run cci-agent --help\n", rest[0])
		return 2
	}
}

// command is a subcommand's flag set with its help text.
type command struct {
	*flag.FlagSet
	help   string
	stdout io.Writer
	stderr io.Writer
}

func newCommand(name, help string, stdout, stderr io.Writer) *command {
	fs := flag.NewFlagSet("cci-agent "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	return &command{FlagSet: fs, help: help, stdout: stdout, stderr: stderr}
}

// parse parses the command's flags. When it reports !ok, the command
// returns code: 0 after --help (printed once, to stdout), 2 after a usage
// error (flag's message and a hint on stderr).
func (c *command) parse(args []string) (code int, ok bool) {
	if err := c.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(c.stdout, c.help)
			return 0, false
		}
		fmt.Fprintf(c.stderr, "run %s --help for usage\n", c.Name())
		return 2, false
	}
	if c.NArg() > 0 {
		fmt.Fprintf(c.stderr, "%s: unexpected argument %q; run %s --help for usage\n", c.Name(), c.Arg(0), c.Name())
		return 2, false
	}
	return 0, true
}

// globalHelp is appended to every command's help.
const globalHelp = `
Global flags (before the command): --config FILE, --containerd-config FILE;
see cci-agent --help.
`

// loadConfig reads the node configuration and says where it came from.
func loadConfig(path string) (config.Config, config.Source, error) {
	return config.LoadSource(path)
}

// defaultConfig is the node defaults, for commands whose flags make the
// file unnecessary (gpus --fake, gpus --nvml).
func defaultConfig() config.Config {
	c := config.Default()
	if err := config.Parse(nil, &c); err != nil {
		panic(err) // the defaults are valid; a test holds them to it
	}
	return c
}

func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}
