//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

const intro = `ccibench measures cci-shim against containerd's runc shim (SPEC R23).

Usage: ccibench <command> [flags]
       ccibench help <command>     (or: ccibench <command> --help)

Every figure is a ratio against a baseline measured in the same run
(containerd's runc shim, an unthrottled volume, the configured limit), never
an absolute number asserted elsewhere. Commands that run containers start a
private containerd v2 in a temp dir (tests/e2eenv: the blockfile snapshotter,
so every container's / is a 20 GiB /dev/loopN) and tear it down at the end,
on error and on SIGINT/SIGTERM: containerd, shims, mounts, loop devices, the
CNI bridge and the cgroups go with it. They need root, loop devices and the
containerd binaries: CCI_TOOLS_DIR (containerd, ctr, containerd-shim-runc-v2;
default <repo>/.tools/bin) and CCI_BIN_DIR (containerd-shim-cci-v2; default
<repo>/bin). Progress lines go to stderr while a command runs; the results
table goes to stdout at the end.

Commands:
`

// command is one ccibench command.
type command struct {
	name, summary, help string
	// env is what containerd the command needs: "" none, "plain", "cri".
	env string
	// flags registers the command's own flags.
	flags func(f *flags, fs *flag.FlagSet)
}

var commands = []command{
	{name: "stdout", env: "plain", summary: "stdout throughput against runc; the lossless stdio throttle (R14)",
		help: `A container cats N MB of pseudo-random bytes to stdout as fast as it can.
Unthrottled (N MB x --repeat, long enough to time): cci (stdio_bps = 0) vs runc,
alternating, MB/s each and the ratio (target >= 0.95), sha256 equality, CPU per
GB of each shim. Throttled: cci at --rate B/s: the forwarded rate (target
±2%), the container's own write rate (backpressure), sha256 equality, the cci
shim's peak RSS.`, flags: stdoutFlags},
	{name: "rootfs", env: "plain", summary: "the rootfs throttle: 6 MB/s and 1000 IOPS each way (R8)",
		help: `busybox dd in one container with the default rootfs throttle and the start burst
off: direct 1 MiB writes and reads (target 6,000,000 B/s ±5%), direct 4 KiB
writes and reads (target 1000 IOPS ±5%), the same writes on a volume (target
>= 5x faster), and with --buffered buffered writes: plain, then sync, and
conv=fsync (cgroup v1 blkio does not throttle the flusher's writeback).`, flags: rootfsFlags},
	{name: "start", env: "plain", summary: "pod start latency: runc, cci throttles off, default config, with and without the start burst",
		help: `ctr run --rm IMAGE ID true, --n times per configuration, interleaved: runc,
as is and with --seccomp (the runtime's default profile, which the cci policy
gives every runc-backend container: the baseline that differs by the shim
alone); cci with every throttle off (target <= 1.10x runc); cci with the
default node config (target <= 1.20x runc); and, when this build's node config has the start
burst keys, cci with the default throttles and the burst off, and with the
default burst (1 GB, 100,000 ops, 60 s). Medians, p90 and ratios to runc.`, flags: startFlags},
	{name: "shim", env: "plain", summary: "the shim daemon's own CPU, wakeups, faults and PSS per container, against the runc shim",
		help: `ctr run -d IMAGE ID sleep 600, one container at a time, --shim-n per runtime,
interleaved: the runc shim's daemon and the cci shim's (default node config).
--shim-settle after each run the daemon (the task's parent) is read: its CPU
by thread (the first thread, the Go runtime's monitor sysmon, the others),
how often those were put on a CPU, its minor page faults and PSS; then the
container is removed. One unmeasured container per runtime goes first.
Medians and cci / runc. Serial, so each figure is one daemon's own work;
density measures pods starting together.`, flags: shimFlags},
	{name: "density", env: "cri", summary: "N pods through CRI, P at a time: time to all running, per-pod p50/p99, PSS per pod",
		help: `--pods pods through CRI, --parallel at a time, for the runc handler (the
baseline), the runc handler with RuntimeDefault seccomp (which the cci policy
gives every runc-backend container), the cci handler (runc backend) and, when runsc is installed and the
node config accepts --gvisor-toml (default: the runsc this host runs), the cci
handler with the gVisor backend.
Per series: time until all pods run (target cci <= 1.10x runc), p50/p99 of each
pod's RunPodSandbox+CreateContainer+StartContainer, PSS per pod of every host
process under the pods' shims by kind (cci shim, runc shim, runsc, workload;
target: cci adds <= 3 MiB per pod over runc's), their CPU over --measure after --settle.
--workload idle|stdout|logs: a sleeping container, 100 kB/s to stdout, or the
same to a log file the pod's log policy collects.`, flags: densityFlags},
	{name: "logs", summary: "log collection: throughput per core, write->sink latency, loss and duplication (R15-R18)",
		help: `logfwd's collector (the one the shim runs per pod) on host directories, no
containerd: throughput of one collector draining --mb MB of 100-byte lines to
the file sink, per CPU second (target >= 200 MB/s); write->sink latency p50/p99
with inotify (target p99 <= 50 ms) and with the 5 s poll only; four rotation
styles (rename-and-create, rename out of the glob, copytruncate, short-lived
files) without and with --kills SIGKILLs of the collector process, counting
lost and duplicated lines.`, flags: logsFlags},
	{name: "burst", summary: "the rootfs start burst: budget at full speed, then R8 within ±5%",
		help: `iothrottle's start burst on this host, no containerd: a loop device, a blkio
cgroup per phase, WatchBurst with R8's default limits; one dd per phase writes
(or reads) through the budget (--burst-mib MiB, or --burst-ops 4 KiB
operations) and on for --sustain under the limits. Reports how the burst
ended, the overshoot of the polling, the burst rate and the sustained rate
after it (target: R8 ±5%). Needs cgroup v1 blkio.`, flags: burstFlags},
	{name: "all", env: "cri", summary: "every command above in one containerd",
		help: `stdout, rootfs, start, shim, density, logs and burst, in that order, with their
default sizes unless flags say otherwise.`,
		flags: func(f *flags, fs *flag.FlagSet) {
			stdoutFlags(f, fs)
			rootfsFlags(f, fs)
			startFlags(f, fs)
			shimFlags(f, fs)
			densityFlags(f, fs)
			logsFlags(f, fs)
			burstFlags(f, fs)
		}},
}

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// writeHelp writes the overview, or a command's help with its flags.
func writeHelp(w io.Writer, c *command) {
	if c == nil {
		fmt.Fprint(w, intro)
		for _, c := range commands {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		}
		fmt.Fprint(w, "\nFlags of every command:\n")
		fs := flag.NewFlagSet("ccibench", flag.ContinueOnError)
		commonFlags(&flags{}, fs)
		fs.SetOutput(w)
		fs.PrintDefaults()
		return
	}
	fmt.Fprintf(w, "ccibench %s: %s\n\n%s\n\nFlags:\n", c.name, c.summary, c.help)
	fs := newFlagSet(c, &flags{}, w)
	fs.PrintDefaults()
}

// Main is ccibench's command line; it returns the exit status. Help has no
// side effects: it starts nothing.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == CollectorCommand {
		return RunCollector(stdout, stderr)
	}
	if len(args) == 0 {
		writeHelp(stderr, nil)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			c := findCommand(args[1])
			if c == nil {
				fmt.Fprintf(stderr, "ccibench help: unknown command %q\n", args[1])
				return 2
			}
			writeHelp(stdout, c)
			return 0
		}
		writeHelp(stdout, nil)
		return 0
	}
	c := findCommand(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "ccibench: unknown command %q (want %s; see ccibench --help)\n", args[0], commandNames())
		return 2
	}
	f := &flags{}
	fs := newFlagSet(c, f, stderr)
	fs.Usage = func() { writeHelp(stdout, c) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ccibench %s: unexpected arguments %q\n", c.name, fs.Args())
		return 2
	}
	for flagName, path := range map[string]string{"json": f.json, "report": f.report} {
		if path == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
			fmt.Fprintf(stderr, "ccibench %s: --%s %s: the directory %s does not exist (checked before the run, not after it)\n",
				c.name, flagName, path, filepath.Dir(path))
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// stop runs last: a second signal during cleanup is caught too, so the
	// teardown finishes.
	defer stop()
	res := &Results{Command: c.name, Host: hostInfo()}
	began := time.Now()
	say := func(line string) { fmt.Fprintln(stderr, line) }
	h := e2eenv.NewProgram(stderr)
	err := h.Run(func() error { return run(ctx, h, c, f, res, began, say) })
	res.Host.Seconds = time.Since(began).Seconds()
	res.WriteText(stdout)
	if werr := f.write(res); werr != nil {
		fmt.Fprintf(stderr, "ccibench: %v\n", werr)
		return 1
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "ccibench %s: interrupted (cleaned up)\n", c.name)
			return 130
		}
		fmt.Fprintf(stderr, "ccibench %s: %v\n", c.name, err)
		return 1
	}
	return 0
}

func commandNames() string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// run measures what command c asks for into res.
func run(ctx context.Context, h *e2eenv.Program, c *command, f *flags, res *Results, began time.Time, say func(string)) error {
	all := c.name == "all"
	res.Host.LoadBefore = LoadAvg()
	var b *Bench
	if c.env != "" {
		say(stamp(began, "starting a private containerd"))
		b = StartWith(h, Options{CRI: c.env == "cri", Progress: say})
		b.began = began
	}
	ownDir := "/nonexistent/ccibench" // no env of our own: every shim is another's
	if b != nil {
		ownDir = b.Env.Dir
	}
	stopWatch := watchContention(ownDir)
	defer func() {
		res.Host.Contention = stopWatch()
		res.Host.LoadAfter = LoadAvg()
	}()
	var err error
	if c.name == "stdout" || all {
		reps, rate := f.reps, f.rate
		if reps == 0 {
			reps = -1
		}
		if rate == 0 {
			rate = -1
		}
		if res.Stdout, err = b.Stdout(ctx, StdoutOptions{MB: f.mb, Reps: reps, Repeat: f.repeat, RateBps: rate}); err != nil {
			return fmt.Errorf("stdout: %w", err)
		}
	}
	if c.name == "rootfs" || all {
		if res.Rootfs, err = b.Rootfs(ctx, RootfsOptions{MiB: f.mib, SmallOps: f.ops, Buffered: f.buffered}); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	if c.name == "start" || all {
		if res.Start, err = b.Start(ctx, StartOptions{N: f.n}); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	if c.name == "shim" || all {
		if res.Shim, err = b.Shim(ctx, ShimOptions{N: f.shimN, Settle: f.shimSettle}); err != nil {
			return fmt.Errorf("shim: %w", err)
		}
	}
	if c.name == "density" || all {
		res.Density, err = b.Density(ctx, DensityOptions{Pods: f.pods, Parallel: f.parallel, Workload: f.workload,
			Settle: f.settle, Measure: f.measure, GvisorTOML: f.gvisorTOML, Rounds: f.rounds})
		if err != nil {
			return fmt.Errorf("density: %w", err)
		}
	}
	if c.name == "logs" || all {
		self, _ := os.Executable()
		res.Logs, err = RunLogs(ctx, LogsOptions{MB: f.logsMB, LatencyLines: f.latencyLines, Lines: f.lines, Kills: f.kills, Self: self},
			func(s string) { say(stamp(began, s)) })
		if err != nil {
			return fmt.Errorf("logs: %w", err)
		}
	}
	if c.name == "burst" || all {
		res.Burst, err = RunBurst(ctx, BurstOptions{MiB: f.burstMiB, Ops: f.burstOps, Sustain: f.sustain}, func(s string) { say(stamp(began, s)) })
		if err != nil {
			return fmt.Errorf("burst: %w", err)
		}
	}
	return nil
}

type flags struct {
	json, report string
	// stdout
	mb, reps, repeat int
	rate             int64
	// rootfs
	mib, ops int
	buffered bool
	// start
	n int
	// shim
	shimN      int
	shimSettle time.Duration
	// density
	pods, parallel, rounds int
	workload               string
	settle, measure        time.Duration
	gvisorTOML             string
	// logs
	logsMB, latencyLines, lines, kills int
	// burst
	burstMiB, burstOps int
	sustain            time.Duration
}

func newFlagSet(c *command, f *flags, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("ccibench "+c.name, flag.ContinueOnError)
	fs.SetOutput(w)
	commonFlags(f, fs)
	c.flags(f, fs)
	return fs
}

func commonFlags(f *flags, fs *flag.FlagSet) {
	fs.StringVar(&f.json, "json", "", "write the results as JSON to `FILE`")
	fs.StringVar(&f.report, "report", "", "write a Markdown report to `FILE`, with its charts (gonum/plot SVG) beside it as FILE's name + -<chart>.svg")
}

func stdoutFlags(f *flags, fs *flag.FlagSet) {
	fs.IntVar(&f.mb, "mb", 30, "stdout: MB (10^6 bytes) the container writes")
	fs.IntVar(&f.reps, "reps", 5, "stdout: unthrottled runs per runtime (0: skip)")
	fs.IntVar(&f.repeat, "repeat", 10, "stdout: an unthrottled run writes the MB this many times (long enough to time)")
	fs.Int64Var(&f.rate, "rate", 1_000_000, "stdout: stdio throttle of the throttled run, bytes/s (0: skip)")
}

func rootfsFlags(f *flags, fs *flag.FlagSet) {
	fs.IntVar(&f.mib, "mib", 64, "rootfs: MiB moved by each 1 MiB-block phase (>= 60 for 10 s at 6 MB/s)")
	fs.IntVar(&f.ops, "ops", 11000, "rootfs: 4 KiB operations of each IOPS phase (>= 10000 for 10 s at 1000 IOPS)")
	fs.BoolVar(&f.buffered, "buffered", true, "rootfs: also measure buffered writes (with and without conv=fsync)")
}

func startFlags(f *flags, fs *flag.FlagSet) {
	fs.IntVar(&f.n, "n", 10, "start: starts per configuration")
}

func shimFlags(f *flags, fs *flag.FlagSet) {
	fs.IntVar(&f.shimN, "shim-n", 10, "shim: measured containers per runtime")
	fs.DurationVar(&f.shimSettle, "shim-settle", 1500*time.Millisecond, "shim: the wait after ctr run -d returns before the daemon is read")
}

func densityFlags(f *flags, fs *flag.FlagSet) {
	fs.IntVar(&f.pods, "pods", 20, "density: pods per series (N)")
	fs.IntVar(&f.parallel, "parallel", 8, "density: pods started at once (P)")
	fs.IntVar(&f.rounds, "rounds", 5, "density: runs of every series, interleaved; the wall and teardown figures are the medians")
	fs.StringVar(&f.workload, "workload", WorkloadIdle, "density: what each pod does: idle, stdout or logs")
	fs.DurationVar(&f.settle, "settle", 2*time.Second, "density: the wait after all pods run before their memory is read and their CPU measured (past the start burst's window: 65s)")
	fs.DurationVar(&f.measure, "measure", 5*time.Second, "density: how long the host processes' CPU is measured once all pods run")
	fs.StringVar(&f.gvisorTOML, "gvisor-toml", GvisorAuto, "density: node config backend lines of the gVisor series (\"auto\": the runsc this host runs, as the tests find it; \"\": skip it)")
}

func logsFlags(f *flags, fs *flag.FlagSet) {
	fs.IntVar(&f.logsMB, "logs-mb", 200, "logs: MB of 100-byte lines the throughput run drains")
	fs.IntVar(&f.latencyLines, "latency-lines", 1000, "logs: lines of each latency run (100 a second)")
	fs.IntVar(&f.lines, "lines", 20000, "logs: lines of each rotation run (4000 a second)")
	fs.IntVar(&f.kills, "kills", 10, "logs: SIGKILLs of the collector process per rotation style (-1: no kill runs)")
}

func burstFlags(f *flags, fs *flag.FlagSet) {
	fs.IntVar(&f.burstMiB, "burst-mib", 64, "burst: byte budget of the bandwidth phases, MiB")
	fs.IntVar(&f.burstOps, "burst-ops", 20000, "burst: operation budget of the IOPS phase")
	fs.DurationVar(&f.sustain, "sustain", 11*time.Second, "burst: time each phase runs under R8 after its budget")
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
	charts, err := res.Charts()
	if err != nil {
		return fmt.Errorf("drawing charts: %w", err)
	}
	for _, c := range charts {
		if err := os.WriteFile(base+"-"+c.Name+".svg", c.SVG, 0o644); err != nil {
			return fmt.Errorf("writing chart: %w", err)
		}
	}
	var sb strings.Builder
	res.WriteMarkdown(&sb, filepath.Base(base), charts)
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
