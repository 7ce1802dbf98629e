// Command backendbench measures what a pod costs on each cci backend beside
// plain runc, in one private containerd (tests/e2eenv): the wall time of
// `ctr run --rm IMAGE true` (alternating runs, median and p90) and the host
// memory of one running pod, as the PSS of every process serving it (the
// shims, runsc's sandbox and gofer, cci-runsc holders, the container's own
// processes under runc). Until ccibench has a backend flag this is how the
// gvisor figures in the README were taken:
//
//	make build && go run ./scripts/backendbench [-runs 15] [-runsc /path/to/runsc] [-platform systrap]
//
// Run it on a quiet machine and repeat: the figures are wall times.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

func main() {
	runs := flag.Int("runs", 15, "ctr run --rm per mode")
	runsc := flag.String("runsc", "runsc", "runsc binary for the gvisor backend")
	platform := flag.String("platform", "", "backend.gvisor.platform (default: the node default, ptrace)")
	network := flag.String("network", "none", "backend.gvisor.network: ctr containers have no CNI network anyway")
	flag.Parse()
	p := e2eenv.NewProgram(os.Stderr)
	if err := p.Run(func() error { return run(p, *runs, *runsc, *platform, *network) }); err != nil {
		fmt.Fprintln(os.Stderr, "backendbench:", err)
		os.Exit(1)
	}
}

type mode struct {
	name    string
	runtime string
	backend string // backend.kind of the cci shim; "" for plain runc
}

func run(p *e2eenv.Program, runs int, runsc, platform, network string) error {
	runscPath, err := exec.LookPath(runsc)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(os.TempDir(), fmt.Sprintf("backendbench-%d.toml", os.Getpid()))
	defer os.Remove(cfgPath)
	env := e2eenv.Start(p, e2eenv.Options{LogLevel: "warn", ExtraEnv: []string{e2eenv.NodeConfigEnv + "=" + cfgPath}})
	base, err := os.ReadFile(env.NodeConfigPath)
	if err != nil {
		return err
	}
	gvisorKeys := "backend.gvisor.runsc = \"" + runscPath + "\"\nbackend.gvisor.root = \"" + env.StateDir + "/runsc\"\nbackend.gvisor.network = \"" + network + "\"\n"
	if platform != "" {
		gvisorKeys += "backend.gvisor.platform = \"" + platform + "\"\n"
	}
	// The runsc root holds a node-wide mount on newer runsc; it goes after
	// the env's own teardown.
	p.Cleanup(func() { unmountUnder(env.StateDir + "/runsc") })
	setBackend := func(kind string) error {
		cfg := string(base)
		if kind == "gvisor" {
			cfg = strings.Replace(cfg, "backend.kind = \"runc\"\n", "backend.kind = \"gvisor\"\n"+gvisorKeys, 1)
		}
		return os.WriteFile(cfgPath, []byte(cfg), 0o644)
	}
	modes := []mode{{"runc (no cci)", e2eenv.RuncRuntime, ""}, {"cci, runc backend", e2eenv.CCIRuntime, "runc"}, {"cci, gvisor backend", e2eenv.CCIRuntime, "gvisor"}}

	times := map[string][]float64{}
	for i := 0; i < runs; i++ {
		for _, m := range modes {
			if m.backend != "" {
				if err := setBackend(m.backend); err != nil {
					return err
				}
			}
			id := fmt.Sprintf("start-%d-%d", i, len(times[m.name]))
			t0 := time.Now()
			if _, errOut, err := env.CtrRun("--rm", "--runtime", m.runtime, env.Image, id, "true"); err != nil {
				return fmt.Errorf("%s: ctr run: %v: %s", m.name, err, errOut)
			}
			times[m.name] = append(times[m.name], time.Since(t0).Seconds())
		}
	}
	fmt.Printf("ctr run --rm %s true, %d alternating runs each (%s):\n", env.Image, runs, runscVersion(runscPath))
	for _, m := range modes {
		xs := times[m.name]
		sort.Float64s(xs)
		fmt.Printf("  %-22s median %.3f s, p90 %.3f s\n", m.name, xs[len(xs)/2], xs[len(xs)*9/10])
	}

	fmt.Printf("host memory of one running pod (PSS of every process serving it, sleep 600 inside):\n")
	for _, m := range modes {
		if m.backend != "" {
			if err := setBackend(m.backend); err != nil {
				return err
			}
		}
		id := "mem-" + strings.NewReplacer(" ", "", ",", "", "(", "", ")", "").Replace(m.name)
		if _, errOut, err := env.CtrRun("-d", "--runtime", m.runtime, env.Image, id, "sleep", "600"); err != nil {
			return fmt.Errorf("%s: ctr run -d: %v: %s", m.name, err, errOut)
		}
		time.Sleep(3 * time.Second)
		total, parts := podPSS(env, id)
		fmt.Printf("  %-22s %6d KiB  (%s)\n", m.name, total, parts)
		env.Ctr("task", "kill", "-s", "SIGKILL", id)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if out, _, _ := env.Ctr("task", "ls"); !strings.Contains(out, id+" ") || strings.Contains(out, "STOPPED") {
				break
			}
		}
		env.Ctr("task", "rm", "-f", id)
		env.Ctr("container", "rm", id)
	}
	return nil
}

// podPSS sums the PSS of the shim serving container id (the one whose
// command line names it) and of all its descendants.
func podPSS(env *e2eenv.Env, id string) (int, string) {
	parent := map[int]int{}
	argv0 := map[int]string{}
	var roots []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
			if f := strings.Fields(string(stat)[i+1:]); len(f) > 2 {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		a0, _, _ := strings.Cut(string(cmd), "\x00")
		argv0[pid] = filepath.Base(a0)
		if !strings.HasPrefix(a0, "/") && !strings.HasPrefix(a0, "runsc-") && !strings.HasPrefix(a0, "containerd-") {
			comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			argv0[pid] = strings.TrimSpace(string(comm)) // re-executed helpers show as "."
		}
		c := strings.ReplaceAll(string(cmd), "\x00", " ")
		if strings.HasPrefix(argv0[pid], "containerd-shim-") && strings.Contains(c, "-id "+id+" ") && strings.Contains(c, env.Address) {
			roots = append(roots, pid)
		}
	}
	in := map[int]bool{}
	for _, r := range roots {
		in[r] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if in[pp] && !in[pid] {
				in[pid], changed = true, true
			}
		}
	}
	byName := map[string]int{}
	total := 0
	for pid := range in {
		kb := pss(pid)
		total += kb
		byName[argv0[pid]] += kb
	}
	var parts []string
	for n, kb := range byName {
		parts = append(parts, fmt.Sprintf("%s %d", n, kb))
	}
	sort.Strings(parts)
	return total, strings.Join(parts, ", ")
}

// pss is a process's proportional set size in KiB.
func pss(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "Pss:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

func runscVersion(runsc string) string {
	out, _ := exec.Command(runsc, "--version").Output()
	s, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return runsc + ": " + s
}

// unmountUnder unmounts every mount below dir.
func unmountUnder(dir string) {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			exec.Command("umount", "-l", f[4]).Run()
		}
	}
}
