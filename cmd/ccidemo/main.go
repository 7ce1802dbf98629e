// Command ccidemo is the main job of `make run`: a demo pod through a local
// containerd with the cci runtime, showing each platform rule applied.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/cci-shim/cci-shim/internal/demo"
	"github.com/cci-shim/cci-shim/internal/interrupt"
	"github.com/cci-shim/cci-shim/internal/version"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

const usage = `ccidemo — the demo behind make run.

Usage: ccidemo [--backend gvisor|runc] [--help] [--version]

As root, starts a private containerd v2 with the cci runtime (blockfile
rootfs) in a temp dir, runs demo pods through crictl and ctr, and prints
each platform rule (the README's rules table) as the pod sees it. The pods
run in gVisor sandboxes (a user-space kernel per pod) when runsc is
installed; without runsc the demo says so and falls back to the runc
backend, which shares the host kernel (development only). --backend chooses
explicitly. At the end, or on
SIGINT/SIGTERM at the next step, it removes everything it started:
containerd, shims, containers, mounts, loop devices, the CNI bridge, cgroups.

Needs containerd, ctr, containerd-shim-runc-v2 and crictl in $CCI_TOOLS_DIR
(default .tools/bin, installed by scripts/deps.sh) and containerd-shim-cci-v2
in $CCI_BIN_DIR (default bin/, make build).

Exit status: 0 every step as shown, 1 a step failed, 2 usage error,
130/143 interrupted (everything removed all the same).
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ccidemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	showVersion := fs.Bool("version", false, "")
	backend := fs.String("backend", "", "")
	fs.BoolVar(showVersion, "v", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintln(stderr, "run ccidemo --help for usage")
		return 2
	}
	if *showVersion {
		version.Print(stdout, "ccidemo")
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ccidemo: unexpected argument %q; run ccidemo --help for usage\n", fs.Arg(0))
		return 2
	}
	p := e2eenv.NewProgram(stdout)
	g := interrupt.Watch(p)
	defer g.Stop()
	if *backend != "" && *backend != "gvisor" && *backend != "runc" {
		fmt.Fprintf(stderr, "ccidemo: --backend %q: allowed values are gvisor and runc\n", *backend)
		return 2
	}
	err := p.Run(g.Work(func() error { demo.Run(g, *backend); return nil }))
	if code := g.ExitCode(); code != 0 {
		fmt.Fprintf(stderr, "ccidemo: interrupted by %v; cleaned up (the log above names anything that could not be removed)\n", g.Signal())
		return code
	}
	if err != nil {
		fmt.Fprintln(stderr, "ccidemo:", err)
		return 1
	}
	return 0
}
