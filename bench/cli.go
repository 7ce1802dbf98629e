//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
)

const usage = `ccibench measures cci-shim against containerd's runc shim (SPEC R23).

Usage: ccibench <command> [flags]

Every command starts a private containerd v2 in a temp dir (tests/e2eenv:
the blockfile snapshotter, so every container's / is a 20 GiB /dev/loopN),
runs its containers through the cci shim (io.containerd.cci.v2, runc
backend) and through runc directly in the same run, prints a table and tears
everything down. It needs root, loop devices and the containerd binaries:
CCI_TOOLS_DIR (containerd, ctr, containerd-shim-runc-v2; default
<repo>/.tools/bin) and CCI_BIN_DIR (containerd-shim-cci-v2; default
<repo>/bin).

Commands:
  stdout   a container cats N MB of pseudo-random bytes to stdout as fast as
           it can. Unthrottled (N MB x --repeat, long enough to time): cci
           (stdio_bps = 0) vs runc, alternating, MB/s each and the ratio
           (target >= 0.90), sha256 equality, CPU per GB of each shim.
           Throttled: cci at --rate B/s: the forwarded rate (target +-2%),
           the container's own write rate (backpressure), sha256 equality,
           the cci shim's peak RSS.
  rootfs   busybox dd in one container with the default rootfs throttle:
           direct 1 MiB writes and reads (target 6,000,000 B/s +-5%),
           direct 4 KiB writes and reads (target 1000 IOPS +-5%), the same
           writes on a volume (target >= 5x faster), and with --buffered
           buffered writes: plain, then sync, and conv=fsync (cgroup v1
           blkio does not throttle the flusher's writeback).
  start    pod start latency (ctr run --rm IMAGE ID true), median and p90:
           runc, cci with every throttle off, cci with the default
           throttles (the rootfs read throttle slows busybox's first read).
  all      all of the above in one containerd.

--report FILE (any command) writes a Markdown report and hand-written SVG
charts beside it. Rates are bytes per second; MB = 10^6 bytes; dd's 1M =
1 MiB. The load average and other end-to-end runs' containers are
recorded: on a shared machine the figures include contention.

Flags (each command takes those that apply to it):
`

// Main is ccibench's command line; it returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		w, status := stdout, 0
		if len(args) == 0 {
			w, status = stderr, 2
		}
		fmt.Fprint(w, usage)
		newFlags(w).fs.PrintDefaults()
		return status
	}
	cmd := args[0]
	switch cmd {
	case "stdout", "rootfs", "start", "all":
	default:
		fmt.Fprintf(stderr, "ccibench: unknown command %q (want stdout, rootfs, start or all; see --help)\n", cmd)
		return 2
	}
	f := newFlags(stderr)
	if err := f.fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ccibench %s: unexpected arguments %q\n", cmd, f.fs.Args())
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var res *Results
	h := e2eenv.NewProgram(stderr)
	err := h.Run(func() error {
		var err error
		res, err = run(ctx, h, cmd, f)
		return err
	})
	if res != nil {
		res.WriteText(stdout)
		if werr := f.write(res); werr != nil {
			fmt.Fprintf(stderr, "ccibench: %v\n", werr)
			return 1
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "ccibench %s: interrupted (cleaned up)\n", cmd)
			return 130
		}
		fmt.Fprintf(stderr, "ccibench %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

type flags struct {
	fs       *flag.FlagSet
	json     string
	report   string
	mb       int
	reps     int
	repeat   int
	rate     int64
	mib      int
	ops      int
	buffered bool
	n        int
}

func newFlags(w io.Writer) *flags {
	f := &flags{fs: flag.NewFlagSet("ccibench", flag.ContinueOnError)}
	f.fs.SetOutput(w)
	f.fs.StringVar(&f.json, "json", "", "write the results as JSON to `FILE`")
	f.fs.StringVar(&f.report, "report", "", "write a Markdown report to `FILE` (charts: FILE's name with -accuracy.svg, -start.svg)")
	f.fs.IntVar(&f.mb, "mb", 30, "stdout: MB (10^6 bytes) the container writes")
	f.fs.IntVar(&f.reps, "reps", 5, "stdout: unthrottled runs per runtime (0: skip)")
	f.fs.IntVar(&f.repeat, "repeat", 10, "stdout: an unthrottled run writes the MB this many times (long enough to time)")
	f.fs.Int64Var(&f.rate, "rate", 1_000_000, "stdout: stdio throttle of the throttled run, bytes/s (0: skip)")
	f.fs.IntVar(&f.mib, "mib", 64, "rootfs: MiB moved by each 1 MiB-block phase (>= 60 for 10 s at 6 MB/s)")
	f.fs.IntVar(&f.ops, "ops", 11000, "rootfs: 4 KiB operations of each IOPS phase (>= 10000 for 10 s at 1000 IOPS)")
	f.fs.BoolVar(&f.buffered, "buffered", true, "rootfs: also measure buffered writes (with and without conv=fsync)")
	f.fs.IntVar(&f.n, "n", 10, "start: starts per configuration")
	return f
}

// run starts the env and runs cmd's benches.
func run(ctx context.Context, h *e2eenv.Program, cmd string, f *flags) (*Results, error) {
	res := &Results{Command: cmd, Host: hostInfo()}
	began := time.Now()
	b := Start(h)
	res.Host.LoadBefore = LoadAvg()
	stopWatch := watchContention(b.Env.Dir)
	defer func() {
		res.Host.Contention = stopWatch()
		res.Host.LoadAfter = LoadAvg()
		res.Host.Seconds = time.Since(began).Seconds()
	}()
	var err error
	if cmd == "stdout" || cmd == "all" {
		reps, rate := f.reps, f.rate
		if reps == 0 {
			reps = -1
		}
		if rate == 0 {
			rate = -1
		}
		if res.Stdout, err = b.Stdout(ctx, StdoutOptions{MB: f.mb, Reps: reps, Repeat: f.repeat, RateBps: rate}); err != nil {
			return res, fmt.Errorf("stdout: %w", err)
		}
	}
	if cmd == "rootfs" || cmd == "all" {
		if res.Rootfs, err = b.Rootfs(ctx, RootfsOptions{MiB: f.mib, SmallOps: f.ops, Buffered: f.buffered}); err != nil {
			return res, fmt.Errorf("rootfs: %w", err)
		}
	}
	if cmd == "start" || cmd == "all" {
		if res.Start, err = b.Start(ctx, StartOptions{N: f.n}); err != nil {
			return res, fmt.Errorf("start: %w", err)
		}
	}
	return res, nil
}

// write writes the JSON and the report the flags ask for.
func (f *flags) write(res *Results) error {
	if f.json != "" {
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding results: %w", err)
		}
		if err := os.WriteFile(f.json, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing results: %w", err)
		}
	}
	if f.report == "" {
		return nil
	}
	base := strings.TrimSuffix(f.report, filepath.Ext(f.report))
	charts := map[string][]byte{}
	if svg := res.AccuracyChart(); svg != nil {
		charts[base+"-accuracy.svg"] = svg
	}
	if svg := res.StartChart(); svg != nil {
		charts[base+"-start.svg"] = svg
	}
	for path, svg := range charts {
		if err := os.WriteFile(path, svg, 0o644); err != nil {
			return fmt.Errorf("writing chart: %w", err)
		}
	}
	var sb strings.Builder
	res.WriteMarkdown(&sb, filepath.Base(base))
	if err := os.WriteFile(f.report, []byte(sb.String()), 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}

// hostInfo describes the machine the figures come from.
func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), Began: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	switch cgroups.Mode() {
	case cgroups.Legacy:
		h.Cgroup = "v1"
	case cgroups.Hybrid:
		h.Cgroup = "v1 (hybrid: blkio on v1, an empty v2 hierarchy)"
	case cgroups.Unified:
		h.Cgroup = "v2"
	}
	return h
}
