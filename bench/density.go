//go:build linux

package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// Density workloads: what each pod's container does while its host
// processes are measured.
const (
	WorkloadIdle   = "idle"   // sleeps
	WorkloadStdout = "stdout" // 1000 lines of 100 bytes a second to stdout (100 kB/s, under R14's 1 MB/s)
	WorkloadLogs   = "logs"   // the same to /var/log/app/app.log, collected by the pod's log policy (R15)
)

// DensityOptions configures the density bench.
type DensityOptions struct {
	// Pods is N, the pods started per series. Default 20.
	Pods int
	// Parallel is P, the pods being started at once. Default 8.
	Parallel int
	// Workload is WorkloadIdle (default), WorkloadStdout or WorkloadLogs.
	Workload string
	// Settle is the wait between the last pod running and the memory
	// snapshot; Measure the time over which CPU is measured. Defaults 2 s
	// and 5 s.
	Settle, Measure time.Duration
	// GvisorTOML is the node config of the gVisor series (GvisorAuto: the
	// runsc this host runs), in place of the backend lines and before the
	// bench's [throttle] table; "" skips it. The series runs only when
	// runsc is found and the config parses.
	GvisorTOML string
	// Rounds runs every series this many times, interleaved (runc, runc
	// with seccomp, cci, gVisor, then again), so that the machine's drift
	// hits every series alike; a series' Wall and Teardown are the medians
	// over its rounds. Default 1.
	Rounds int
}

// GvisorAuto selects the gVisor series' backend lines from this host.
const GvisorAuto = "auto"

func (o DensityOptions) withDefaults() DensityOptions {
	if o.Pods <= 0 {
		o.Pods = 20
	}
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	if o.Workload == "" {
		o.Workload = WorkloadIdle
	}
	if o.Settle <= 0 {
		o.Settle = 2 * time.Second
	}
	if o.Measure <= 0 {
		o.Measure = 5 * time.Second
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	return o
}

// DensitySeries is N pods through one CRI handler.
type DensitySeries struct {
	Name    string `json:"name"`
	Handler string `json:"handler"`
	// Seccomp: every container of the series asks for the runtime's default
	// seccomp profile (RuntimeDefault), which the cci policy gives every
	// container of a runc-backend pod (there narrowed to the native syscall
	// ABI, one filter for runc to compile instead of three).
	Seccomp bool `json:"seccomp,omitempty"`
	// Skipped says why the series did not run (e.g. no runsc).
	Skipped string `json:"skipped,omitempty"`
	// Wall is the time from the first RunPodSandbox to the last
	// StartContainer returning: all N pods running; the median of Walls,
	// one per round.
	Wall  float64   `json:"wallSeconds"`
	Walls []float64 `json:"wallsSeconds,omitempty"`
	// PerPod is each pod's RunPodSandbox + CreateContainer +
	// StartContainer, in seconds, in start order, round after round.
	PerPod []float64 `json:"perPodSeconds"`
	P50    float64   `json:"p50"`
	P99    float64   `json:"p99"`
	// Calls splits PerPod by CRI call: each pod's RunPodSandbox,
	// CreateContainer and StartContainer, in seconds, in PerPod's order.
	Calls map[string][]float64 `json:"callSeconds,omitempty"`
	// Usage is the host processes of all N pods, by category, after
	// Settle; CPUPerPod is their CPU over Measure, per pod, in CPU
	// seconds per second (1 = one core). Both are the first round's.
	Usage     []ProcUsage        `json:"usage"`
	CPUPerPod map[string]float64 `json:"cpuPerPod"`
	// Teardown is the time to stop and remove the N pods (the median of
	// Teardowns, one per round).
	Teardown  float64   `json:"teardownSeconds"`
	Teardowns []float64 `json:"teardownsSeconds,omitempty"`
	// StartCPU is the machine's busy CPU time (all processes: containerd,
	// shims, runc, the workloads; from /proc/stat) from the first
	// RunPodSandbox to the last StartContainer, per pod, in CPU seconds;
	// the median of StartCPUs, one per round. With the CPUs saturated it
	// is what the wall is made of, with less noise.
	StartCPU  float64   `json:"startCPUSecondsPerPod,omitempty"`
	StartCPUs []float64 `json:"startCPUsSecondsPerPod,omitempty"`
	// StartCPUBy splits StartCPU by who spent it (the StartCPU* keys), per
	// pod, in CPU seconds: the median of StartCPUBys, one per round.
	StartCPUBy  map[string]float64   `json:"startCPUByPerPod,omitempty"`
	StartCPUBys []map[string]float64 `json:"startCPUBysPerPod,omitempty"`
	// MountsPerPod is how many mounts the N running pods added to the
	// host's mount table, per pod (the first round's): every runc,
	// containerd and shim action that reads /proc/self/mountinfo pays for
	// all of them.
	MountsPerPod float64 `json:"hostMountsPerPod"`
}

// addRound folds round r, a later run of the same series, into s.
func (s *DensitySeries) addRound(r *DensitySeries) {
	s.Walls = append(s.Walls, r.Wall)
	s.Teardowns = append(s.Teardowns, r.Teardown)
	s.StartCPUs = append(s.StartCPUs, r.StartCPU)
	s.PerPod = append(s.PerPod, r.PerPod...)
	if s.Calls == nil {
		s.Calls = map[string][]float64{}
	}
	for _, c := range criCalls {
		s.Calls[c] = append(s.Calls[c], r.Calls[c]...)
	}
	s.Wall, s.Teardown, s.StartCPU = Median(s.Walls), Median(s.Teardowns), Median(s.StartCPUs)
	s.P50, s.P99 = Percentile(s.PerPod, 50), Percentile(s.PerPod, 99)
	if r.StartCPUBy != nil {
		s.StartCPUBys = append(s.StartCPUBys, r.StartCPUBy)
		s.StartCPUBy = map[string]float64{}
		for _, k := range StartCPUKeys {
			var vs []float64
			for _, by := range s.StartCPUBys {
				if v, ok := by[k]; ok {
					vs = append(vs, v)
				}
			}
			if len(vs) > 0 {
				s.StartCPUBy[k] = Median(vs)
			}
		}
	}
}

// Who spent a series' CPU to start (DensitySeries.StartCPUBy), from
// /proc/<pid>/stat: a process's own user+system time, and that of the
// children it waited for (cutime, cstime), which the kernel adds to the
// parent when it reaps them.
const (
	StartCPUContainerd = "containerd"         // containerd's own
	StartCPUSpawned    = "shim start, CNI"    // containerd's children: each pod's `shim start` process, the CNI plugins
	StartCPUShims      = "shims"              // the pods' shim daemons' own (the backend's too, where it runs in process)
	StartCPURuntime    = "shims' children"    // runc create, start, state (and anything else a shim runs and waits for)
	StartCPUContainers = "containers to exec" // the pods' container processes so far: runc init up to exec (the seccomp filter), then pause and the command
	StartCPUSandbox    = "sandbox (runsc)"    // gVisor's processes
	StartCPUBench      = "ccibench"           // this process: the CRI client
	StartCPURest       = "rest"               // what is left: the kernel's threads and interrupts, anything else on the machine
)

// StartCPUKeys lists the StartCPUBy keys in their report order.
var StartCPUKeys = []string{StartCPUContainerd, StartCPUSpawned, StartCPUShims, StartCPURuntime, StartCPUContainers, StartCPUSandbox, StartCPUBench, StartCPURest}

// cpuSnapshot is what startCPUBy compares against: containerd's and this
// process's CPU before the series.
type cpuSnapshot struct {
	containerd, spawned, bench float64
}

func takeCPUSnapshot(containerd int) (cpuSnapshot, bool) {
	self, kids, ok := procCPUSplit(containerd)
	bench, _ := procCPU(os.Getpid())
	return cpuSnapshot{containerd: self, spawned: kids, bench: bench}, ok
}

// startCPUBy splits total (CPU seconds over the start, all processes) by
// who spent it. The shims and their processes are all this series': the
// series before were removed.
func (b *Bench) startCPUBy(before cpuSnapshot, total float64, pods int) map[string]float64 {
	after, ok := takeCPUSnapshot(b.Env.ContainerdPID())
	if !ok {
		return nil
	}
	by := map[string]float64{
		StartCPUContainerd: after.containerd - before.containerd,
		StartCPUSpawned:    after.spawned - before.spawned,
		StartCPUBench:      after.bench - before.bench,
	}
	for pid, kind := range podProcs(b.shimPIDs()) {
		self, kids, _ := procCPUSplit(pid)
		switch kind {
		case KindCCIShim, KindRuncShim:
			by[StartCPUShims] += self
			by[StartCPURuntime] += kids
		case KindSandbox:
			by[StartCPUSandbox] += self + kids
		default:
			by[StartCPUContainers] += self + kids
		}
	}
	rest := total * float64(pods)
	for k, v := range by {
		by[k] = v / float64(pods)
		rest -= v
	}
	by[StartCPURest] = rest / float64(pods)
	return by
}

// PSSPerPod returns the PSS of the category per pod, in bytes; kind ""
// sums the processes we add (everything but the workload).
func (s DensitySeries) PSSPerPod(kind string, pods int) float64 {
	var sum int64
	for _, u := range s.Usage {
		if u.Kind == kind || (kind == "" && AddedByUs(u.Kind)) {
			sum += u.PSS
		}
	}
	return float64(sum) / float64(max(pods, 1))
}

// DensityResult is the density bench's result.
type DensityResult struct {
	Pods     int    `json:"pods"`
	Parallel int    `json:"parallel"`
	Workload string `json:"workload"`
	Rounds   int    `json:"rounds,omitempty"`
	// Settle and Measure: memory was read Settle after all pods ran, and
	// CPU measured over Measure from then.
	Settle  time.Duration   `json:"settleNs,omitempty"`
	Measure time.Duration   `json:"measureNs,omitempty"`
	Series  []DensitySeries `json:"series"`
	// RestrictOOM: containerd clamped CRI's negative oom_score_adj (this
	// host refuses negative values).
	RestrictOOM bool `json:"restrictOOM,omitempty"`
}

// Density series names.
const (
	DensityRunc        = "runc handler (baseline)"
	DensityRuncSeccomp = "runc handler + default seccomp"
	DensityCCI         = "cci, runc backend"
	DensityGvisor      = "cci, gvisor backend"
)

// Density starts opts.Pods pods through CRI, opts.Parallel at a time, for
// the runc handler, the cci handler and (when available) the cci handler
// with the gVisor backend, one series after the other with every pod of a
// series removed before the next, opts.Rounds times. The env must have CRI.
func (b *Bench) Density(ctx context.Context, o DensityOptions) (*DensityResult, error) {
	o = o.withDefaults()
	switch o.Workload {
	case WorkloadIdle, WorkloadStdout, WorkloadLogs:
	default:
		return nil, fmt.Errorf("workload %q: want %s, %s or %s", o.Workload, WorkloadIdle, WorkloadStdout, WorkloadLogs)
	}
	defer b.SetThrottle(Defaults())
	res := &DensityResult{Pods: o.Pods, Parallel: o.Parallel, Workload: o.Workload, Rounds: o.Rounds, Settle: o.Settle, Measure: o.Measure, RestrictOOM: b.RestrictOOM}
	type spec struct {
		name, handler, toml string
		seccomp             bool
	}
	specs := []spec{{DensityRunc, e2eenv.CRIHandlerRunc, "", false}, {DensityRuncSeccomp, e2eenv.CRIHandlerRunc, "", true},
		{DensityCCI, e2eenv.CRIHandlerCCI, "", false}}
	if o.GvisorTOML != "" {
		specs = append(specs, spec{DensityGvisor, e2eenv.CRIHandlerCCI, o.GvisorTOML, false})
	}
	defer b.Env.SetBackend("", nodeConfig("", Defaults()))
	first := map[string]int{} // a series' index in res.Series, once it has run
	for round := 1; round <= o.Rounds; round++ {
		for _, sp := range specs {
			name := sp.name
			if o.Rounds > 1 {
				name = fmt.Sprintf("%s, round %d/%d", sp.name, round, o.Rounds)
			}
			backend := ""
			if sp.toml != "" {
				var why string
				if backend, why = b.gvisorBackend(sp.toml); why != "" {
					if round == 1 {
						b.logf("density: %s skipped: %s", sp.name, why)
						res.Series = append(res.Series, DensitySeries{Name: sp.name, Handler: sp.handler, Skipped: why})
					}
					continue
				}
			}
			if err := b.Env.SetBackend(backend, nodeConfig("", Defaults())); err != nil {
				return res, err
			}
			s, err := b.densitySeries(ctx, name, sp.handler, sp.seccomp, o)
			if s != nil {
				s.Name = sp.name
				if i, ok := first[sp.name]; ok {
					res.Series[i].addRound(s)
				} else {
					s.Walls, s.Teardowns, s.StartCPUs = []float64{s.Wall}, []float64{s.Teardown}, []float64{s.StartCPU}
					if s.StartCPUBy != nil {
						s.StartCPUBys = []map[string]float64{s.StartCPUBy}
					}
					first[sp.name] = len(res.Series)
					res.Series = append(res.Series, *s)
				}
			}
			if err != nil {
				return res, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return res, nil
}

// gvisorBackend returns the node config's backend lines for the gVisor
// series, or why it cannot run. "auto" is the runsc this host runs
// (e2eenv.FindGVisor: the tools dir's, else the one in PATH, and the
// platform and network it supports).
func (b *Bench) gvisorBackend(lines string) (backend, why string) {
	if lines == GvisorAuto {
		g, err := e2eenv.FindGVisor(b.Env.ToolsDir)
		if err != nil {
			return "", err.Error()
		}
		b.logf("density: gVisor series on %s", g.Note)
		lines = g.Backend
	}
	defer b.Env.SetBackend("", nodeConfig("", Defaults()))
	if err := b.Env.SetBackend(lines, nodeConfig("", Defaults())); err != nil {
		return "", err.Error()
	}
	data, err := os.ReadFile(b.Env.NodeConfigPath)
	if err != nil {
		return "", err.Error()
	}
	cfg := config.Default()
	if err := config.Parse(data, &cfg); err != nil {
		return "", fmt.Sprintf("this build's node config refuses %q: %v", lines, err)
	}
	return lines, ""
}

// criCalls are the CRI calls that start a pod, in order.
var criCalls = [...]string{"RunPodSandbox", "CreateContainer", "StartContainer"}

type densityPod struct {
	sandbox string
	seconds float64
	calls   [len(criCalls)]float64
	err     error
}

func (b *Bench) densitySeries(ctx context.Context, name, handler string, seccomp bool, o DensityOptions) (*DensitySeries, error) {
	rs, _ := b.Env.CRI()
	s := &DensitySeries{Name: name, Handler: handler, Seccomp: seccomp}
	pods := make([]densityPod, o.Pods)
	defer b.removePods(rs, o.Parallel, s)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		running int
		next    = make(chan int)
	)
	mounts0 := hostMounts()
	cpu0, _ := takeCPUSnapshot(b.Env.ContainerdPID())
	busy0, _, cpuOK := machineCPU()
	began := time.Now()
	prog := b.progress("density")
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				id, calls, err := b.startPod(ctx, rs, handler, fmt.Sprintf("%s-%d", strings.Trim(strings.Fields(name)[0], ","), i), o.Workload, seccomp)
				mu.Lock()
				pods[i] = densityPod{sandbox: id, seconds: time.Since(t0).Seconds(), calls: calls, err: err}
				if err == nil {
					running++
				}
				prog.update("%s: %d/%d pods running (%d at a time), %.1f s", name, running, o.Pods, o.Parallel, time.Since(began).Seconds())
				mu.Unlock()
			}
		}()
	}
	for i := range o.Pods {
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	s.Wall = time.Since(began).Seconds()
	if busy1, _, ok := machineCPU(); ok && cpuOK && o.Pods > 0 {
		s.StartCPU = float64(busy1-busy0) / clockTicks / float64(o.Pods)
		s.StartCPUBy = b.startCPUBy(cpu0, s.StartCPU, o.Pods)
	}
	prog.done("%s: %d/%d pods running in %.2f s", name, running, o.Pods, s.Wall)
	if err := ctx.Err(); err != nil {
		return s, err
	}
	s.Calls = map[string][]float64{}
	for _, p := range pods {
		if p.err != nil {
			return s, p.err
		}
		s.PerPod = append(s.PerPod, p.seconds)
		for i, c := range criCalls {
			s.Calls[c] = append(s.Calls[c], p.calls[i])
		}
	}
	s.P50, s.P99 = Percentile(s.PerPod, 50), Percentile(s.PerPod, 99)

	if err := sleepCtx(ctx, o.Settle); err != nil {
		return s, err
	}
	if o.Pods > 0 {
		s.MountsPerPod = float64(hostMounts()-mounts0) / float64(o.Pods)
	}
	shims := b.shimPIDs()
	procs := podProcs(shims)
	before := procUsage(procs)
	b.progress("density").done("%s: measuring CPU for %v", name, o.Measure)
	if err := sleepCtx(ctx, o.Measure); err != nil {
		return s, err
	}
	after := procUsage(procs)
	s.Usage = before
	s.CPUPerPod = map[string]float64{}
	for _, a := range after {
		for _, bf := range before {
			if a.Kind == bf.Kind {
				s.CPUPerPod[a.Kind] = (a.CPUSeconds - bf.CPUSeconds) / o.Measure.Seconds() / float64(o.Pods)
			}
		}
	}
	b.logf("density: %s: p50 %.3f s, p99 %.3f s, PSS per pod (host processes we add) %.1f MiB",
		name, s.P50, s.P99, s.PSSPerPod("", o.Pods)/(1<<20))
	return s, nil
}

// shimPIDs lists the env's pod shims of both handlers: the cci shim and
// containerd's runc shim.
func (b *Bench) shimPIDs() []int {
	return append(b.Env.ShimPIDs(e2eenv.CCIShimBinary), b.Env.ShimPIDs(e2eenv.RuncShimBinary)...)
}

// hostMounts counts the mounts of this process's mount namespace (the
// host's): the lines of /proc/self/mountinfo.
func hostMounts() int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte{'\n'})
}

// workloadCommand is the container's command for a workload.
func workloadCommand(workload string) []string {
	line := strings.Repeat("x", 94) // with "NNNNN " and the newline: ~100 bytes
	loop := `i=0; while :; do j=0; while [ $j -lt 100 ]; do echo "$i ` + line + `"; i=$((i+1)); j=$((j+1)); done; usleep 100000; done`
	switch workload {
	case WorkloadStdout:
		return []string{"sh", "-c", "trap 'exit 0' TERM; " + loop}
	case WorkloadLogs:
		return []string{"sh", "-c", "trap 'exit 0' TERM; mkdir -p /var/log/app; exec >> /var/log/app/app.log; " + loop}
	}
	return []string{"sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"}
}

// startPod runs a one-container pod and returns its sandbox id and how
// long each of criCalls took; on error what was created is left for
// removePods (it lists the env's pods). The container asks for what
// kubelet asks for every container (its default masked and read-only
// paths); with seccomp, the pod and its container also ask for
// RuntimeDefault.
func (b *Bench) startPod(ctx context.Context, rs runtimeapi.RuntimeServiceClient, handler, name, workload string, seccomp bool) (string, [len(criCalls)]float64, error) {
	var calls [len(criCalls)]float64
	t := time.Now()
	lap := func(i int) {
		calls[i] = time.Since(t).Seconds()
		t = time.Now()
	}
	uid := e2eenv.PodUID(fmt.Sprintf("ccibench-%s-%d", name, time.Now().UnixNano())) // kubelet's form: a UUID
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ccibench", Uid: uid},
		LogDirectory: filepath.Join(b.Env.Dir, "pod-logs", uid),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	if workload == WorkloadLogs {
		cfg.Annotations = map[string]string{logfwd.AnnotationPolicies: `[{"container":"app","paths":["/var/log/app/*.log"]}]`}
	}
	// kubelet sends every container's masked and read-only paths (its
	// defaults unless procMount is Unmasked); runc mounts each one.
	ctrLinux := &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
		MaskedPaths: sandbox.DefaultMaskedPaths, ReadonlyPaths: sandbox.DefaultReadonlyPaths}}
	if seccomp {
		profile := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
		cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Seccomp: profile}
		ctrLinux.SecurityContext.Seccomp = profile
	}
	sb, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		return "", calls, fmt.Errorf("RunPodSandbox %s (handler %s): %w", name, handler, err)
	}
	lap(0)
	cr, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.PodSandboxId, SandboxConfig: cfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: b.Env.Image},
			Command: workloadCommand(workload), LogPath: "app.log", Annotations: cfg.Annotations, Linux: ctrLinux}})
	if err != nil {
		return sb.PodSandboxId, calls, fmt.Errorf("CreateContainer in %s: %w", name, err)
	}
	lap(1)
	if _, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cr.ContainerId}); err != nil {
		return sb.PodSandboxId, calls, fmt.Errorf("StartContainer in %s: %w", name, err)
	}
	lap(2)
	return sb.PodSandboxId, calls, nil
}

// removePods stops and removes every CRI pod of the env, parallel at a
// time, records the time in s, and waits for the shims to exit so that the
// next series starts alone. It runs on a context of its own: after an
// interrupt it is the cleanup.
func (b *Bench) removePods(rs runtimeapi.RuntimeServiceClient, parallel int, s *DensitySeries) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	list, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		b.logf("density: listing pods: %v", err)
		return
	}
	began := time.Now()
	prog := b.progress("density")
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done int
		ids  = make(chan string)
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
					b.logf("density: stopping pod %s: %v", id, err)
				}
				if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
					b.logf("density: removing pod %s: %v", id, err)
				}
				mu.Lock()
				done++
				prog.update("%s: %d/%d pods removed", s.Name, done, len(list.Items))
				mu.Unlock()
			}
		}()
	}
	for _, p := range list.Items {
		ids <- p.Id
	}
	close(ids)
	wg.Wait()
	s.Teardown = time.Since(began).Seconds()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if len(b.shimPIDs()) == 0 {
			break
		}
	}
	prog.done("%s: %d pods removed in %.2f s", s.Name, len(list.Items), s.Teardown)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sortedCopy returns xs sorted, leaving xs as it is.
func sortedCopy(xs []float64) []float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s
}
