package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/podmetrics"
)

// staticSource is a pod's figures for tests that exercise the serving path.
type staticSource struct{ s podmetrics.Snapshot }

func (s staticSource) Snapshot(context.Context) (podmetrics.Snapshot, error) { return s.s, nil }

// TestPodMetricsRelayInGVisor runs the in-sandbox relay (cmd/cci-podmetrics)
// in a gVisor sandbox the way the shim runs it for a MetricsInSandbox backend:
// read-only mounted, started as an exec as nobody, its stdin and stdout joined
// to podmetrics.ServeRelay. It scrapes it from inside the sandbox and measures
// what it costs the pod on the host: the PSS of the sandbox's processes
// (sentry and gofer) against the same sandbox without it.
//
// It drives runsc directly, with --network=none: on this kernel Debian's
// runsc cannot take over a pod network namespace (see the report), and the
// backend that will start it through containerd is another change.
func TestPodMetricsRelayInGVisor(t *testing.T) {
	testutil.RequireRoot(t, "runsc")
	runsc, err := exec.LookPath("runsc")
	if err != nil {
		testutil.Unavailable(t, "runsc not found (Debian package runsc)")
	}
	root, err := repoRootDir()
	if err != nil {
		t.Fatal(err)
	}
	relayBin := filepath.Join(root, "bin", podmetrics.RelayBinary)
	if _, err := os.Stat(relayBin); err != nil {
		t.Fatalf("%s: run make build first: %v", relayBin, err)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		testutil.Unavailable(t, "busybox not found (Debian package busybox-static)")
	}
	dir, err := os.MkdirTemp("/tmp", "cci-pm-gv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rootDir := filepath.Join(dir, "runsc")
	rs := func(args ...string) *exec.Cmd {
		return exec.Command(runsc, append([]string{"--root", rootDir, "--network=none"}, args...)...)
	}

	src := staticSource{podmetrics.Snapshot{Namespace: "default", Pod: "gv", Containers: []podmetrics.ContainerStats{
		{Name: "app", CPU: &podmetrics.CPUStats{UsageSeconds: 1.25}, Memory: &podmetrics.MemoryStats{UsageBytes: 4096, WorkingSetBytes: 4096}},
	}}}
	handler := podmetrics.NewHandler(podmetrics.NewCollector(src, nil), nil)

	// run starts a sandbox whose init is `sleep`, like a pod's pause, and
	// returns startRelay, which runs the relay in it as an exec with its
	// stdio joined to ServeRelay, as the shim runs it through the backend.
	run := func(id string) (startRelay, stop func()) {
		t.Helper()
		bundle := filepath.Join(dir, id)
		rootfs := filepath.Join(bundle, "rootfs")
		if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, busybox, filepath.Join(rootfs, "bin", "busybox"))
		writeSpecFile(t, bundle, []string{"/bin/busybox", "sleep", "600"}, relayBin)
		cmd := rs("run", "--bundle", bundle, id)
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !waitFor(30*time.Second, func() bool { return rs("exec", id, "/bin/busybox", "true").Run() == nil }) {
			t.Fatalf("sandbox %s did not start", id)
		}
		var ex *exec.Cmd
		startRelay = func() {
			ex = rs(append([]string{"exec", "--user", "65534:65534", id}, podmetrics.RelayArgs(podmetrics.DefaultConfig())...)...)
			stdin, _ := ex.StdinPipe()
			stdout, _ := ex.StdoutPipe()
			ex.Stderr = os.Stderr
			if err := ex.Start(); err != nil {
				t.Fatal(err)
			}
			go podmetrics.ServeRelay(stdout, stdin, handler)
		}
		return startRelay, func() {
			rs("kill", id, "KILL").Run()
			for _, c := range []*exec.Cmd{ex, cmd} {
				if c == nil {
					continue
				}
				done := make(chan struct{})
				go func() { c.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					c.Process.Kill()
				}
			}
			rs("delete", "-force", id).Run()
		}
	}
	scrape := func(id string) (string, error) {
		out, err := rs("exec", id, "/bin/busybox", "wget", "-q", "-O-", "http://127.0.0.1:19100/metrics").CombinedOutput()
		return string(out), err
	}

	// The sentry's memory differs from one sandbox to the next by up to
	// 1 MiB, so the relay's cost is taken in one sandbox, before and after
	// it starts. Both sandboxes first run the execs a scrape makes (wget
	// finds nothing listening), so that what the scrapes themselves cost the
	// sentry is in the figure before; the second sandbox, which never runs
	// the relay, shows how far a sandbox drifts over the same steps.
	const scrapes = 10
	base := fmt.Sprintf("pmgv-base-%d", os.Getpid())
	_, stopBase := run(base)
	defer stopBase()
	withRelay := fmt.Sprintf("pmgv-relay-%d", os.Getpid())
	startRelay, stopRelay := run(withRelay)
	defer stopRelay()
	// The sentry's heap moves with its garbage collector: the least of a
	// few samples is the steady figure.
	minPSS := func(id string) int64 {
		m := int64(1 << 62)
		for range 8 {
			m = min(m, sandboxPSS(t, filepath.Join(dir, id)))
			time.Sleep(250 * time.Millisecond)
		}
		return m
	}
	for range scrapes {
		scrape(withRelay)
		scrape(base)
	}
	rb, bb := minPSS(withRelay), minPSS(base)

	startRelay()
	var body string
	if !waitFor(30*time.Second, func() bool { body, err = scrape(withRelay); return err == nil }) {
		t.Fatalf("scraping the relay inside gVisor: %v\n%s", err, body)
	}
	if !strings.Contains(body, `container_cpu_usage_seconds_total{container="app",namespace="default",pod="gv"} 1.25`) {
		t.Fatalf("the relay in gVisor served:\n%s", body)
	}
	for i := 1; i < scrapes; i++ {
		time.Sleep(250 * time.Millisecond) // under the endpoint's rate limit
		if _, err := scrape(withRelay); err != nil {
			t.Errorf("scrape %d: %v", i, err)
		}
		scrape(base) // the same execs in the sandbox without the relay
	}
	ra, ba := minPSS(withRelay), minPSS(base)
	t.Logf("gVisor sandbox PSS (sentry+gofer, least of 8 samples), before and after the relay and %d scrapes: %d -> %d KiB, the relay costs %+d KiB; the sandbox without it over the same steps: %d -> %d KiB (%+d KiB)",
		scrapes, rb>>10, ra>>10, (ra-rb)>>10, bb>>10, ba>>10, (ba-bb)>>10)
	if ra-rb > 2<<20 {
		t.Errorf("the relay costs the pod %d KiB of host memory; the budget is 2 MiB", (ra-rb)>>10)
	}
}

// writeSpecFile writes a bundle's config.json: args as the process, the
// rootfs read-only, the relay mounted read-only at podmetrics.RelayPath as
// the shim mounts it, user nobody, no capabilities.
func writeSpecFile(t *testing.T, bundle string, args []string, relayBin string) {
	t.Helper()
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"args": args, "cwd": "/", "env": []string{"PATH=/bin", "GOMAXPROCS=1"},
			"user":            map[string]any{"uid": 65534, "gid": 65534},
			"noNewPrivileges": true,
		},
		"root":     map[string]any{"path": "rootfs", "readonly": true},
		"hostname": "pm",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
			{"destination": podmetrics.RelayPath, "type": "bind", "source": relayBin, "options": []string{"rbind", "ro", "nosuid", "nodev"}},
		},
		"linux": map[string]any{"namespaces": []map[string]any{{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}}},
	}
	b, _ := json.MarshalIndent(spec, "", " ")
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// sandboxPSS sums the PSS of the host processes of the sandbox of bundle
// (runsc's sandbox and gofer).
func sandboxPSS(t *testing.T, bundle string) int64 {
	t.Helper()
	var total int64
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 0 || (args[0] != "runsc-sandbox" && args[0] != "runsc-gofer") ||
			(!strings.Contains(string(b), "--bundle="+bundle+"\x00") && !strings.Contains(string(b), "--bundle\x00"+bundle+"\x00")) {
			continue
		}
		pid := filepath.Base(filepath.Dir(p))
		rollup, err := os.ReadFile("/proc/" + pid + "/smaps_rollup")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(rollup), "\n") {
			if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				total += kb << 10
				found = append(found, args[0]+"/"+pid)
			}
		}
	}
	if len(found) < 2 {
		t.Fatalf("sandbox of %s: found %v; want its runsc-sandbox and runsc-gofer", bundle, found)
	}
	return total
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// repoRootDir is the module root (where make build puts bin/).
func repoRootDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no go.mod above %s", wd)
}
