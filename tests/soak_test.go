package tests

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestSoak runs pods through the lifecycle many times while containerd
// restarts and cci shims are killed, under stdout and file-log load:
//   - 200 `ctr run --rm` cycles, each printing 50 numbered lines through
//     the stdout throttle; every 10th carries an invalid annotation and must
//     fail cleanly; ctr's output of each successful cycle is exact;
//   - a CRI pod that prints a numbered line every 10 ms to stdout and to a
//     declared log file for the whole run;
//   - 5 containerd restarts and 5 SIGKILLs of a cci shim serving a pod.
//
// Afterwards the CRI log and the file sink hold every line of the CRI pod
// exactly once, and nothing is left: no process, mount, loop device, FIFO,
// socket, cgroup or pod state. CCI_SOAK_CYCLES changes the cycle count.
func TestSoak(t *testing.T) {
	cycles := 200
	if v := os.Getenv("CCI_SOAK_CYCLES"); v != "" {
		fmt.Sscan(v, &cycles)
	}
	env := startEnv(t, true)
	ctx := env.Context()
	began := time.Now()

	// The long-running CRI pod: stdout and a declared log file.
	cfg := podConfig(env, "soaker", map[string]string{
		"logs.cci.io/policies": `[{"container":"soaker","paths":["/var/log/app/*.log"]}]`,
	})
	pod := mustRunPod(ctx, t, env, cfg)
	pod.mustStart(ctx, t, containerConfig(env, "soaker",
		`mkdir -p /var/log/app; i=1; while [ ! -e /tmp/stop ]; do echo "soak $i"; echo "soak $i" >> /var/log/app/app.log; i=$((i+1)); usleep 10000; done; echo $((i-1)) > /tmp/count; sleep 3600`))
	soakerID := func() string {
		out, _, _ := env.CtrIn(e2eenv.CRINamespace, "task", "ls")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] != pod.id && f[0] != "TASK" {
				return f[0]
			}
		}
		return ""
	}

	var ok, refused, interrupted, restarts, kills int
	var restartWindows []window
	for i := 1; i <= cycles; i++ {
		id := fmt.Sprintf("soak-%d", i)
		args := []string{"--rm", "--runtime", cciRuntime}
		bad := i%10 == 0
		if bad {
			args = append(args, "--annotation", "shm.cci.io/size=lots")
		}
		args = append(args, env.Image, id, "sh", "-c", `i=1; while [ $i -le 50 ]; do echo "out $i"; i=$((i+1)); done`)
		out, errOut, err := env.CtrRun(args...)
		switch {
		case bad && err != nil && strings.Contains(errOut, "shm.cci.io/size"):
			refused++
		case bad:
			t.Errorf("cycle %d: an invalid annotation ran or failed otherwise: %v %s", i, err, ctrError(errOut))
		case err == nil:
			if want := expectedOut(50); out != want {
				t.Errorf("cycle %d: ctr output differs (%d bytes, want %d): lost or repeated bytes", i, len(out), len(want))
			}
			ok++
		default:
			interrupted++ // a cycle that met a restart or a kill
			env.Ctr("task", "rm", "-f", id)
			env.Ctr("container", "rm", id)
		}
		if i%40 == 0 && restarts < 5 {
			w := window{from: time.Now()}
			if _, err := env.RestartContainerd(syscall.SIGTERM, 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			w.to = time.Now()
			restartWindows = append(restartWindows, w)
			restarts++
		}
		if i%40 == 20 && kills < 5 {
			victim := fmt.Sprintf("victim-%d", i)
			if _, errOut, err := env.CtrRun("-d", "--runtime", cciRuntime, env.Image, victim, "sh", "-c", "while :; do echo x; sleep 0.1; done"); err != nil {
				t.Fatalf("victim: %v %s", err, errOut)
			}
			for _, pid := range env.ShimPIDs(e2eenv.CCIShimBinary) {
				if strings.Contains(procCmdline(pid), "-id "+victim) {
					syscall.Kill(pid, syscall.SIGKILL)
					kills++
				}
			}
			waitFor(20*time.Second, func() bool {
				out, _, _ := env.Ctr("task", "ls")
				return !strings.Contains(out, victim) || strings.Contains(out, "STOPPED")
			})
			env.Ctr("task", "rm", "-f", victim)
			env.Ctr("container", "rm", victim)
		}
	}
	t.Logf("soak: %d cycles in %v: %d ok, %d refused as expected, %d interrupted; %d containerd restarts, %d shim kills",
		cycles, time.Since(began).Round(time.Second), ok, refused, interrupted, restarts, kills)
	if cycles >= 200 && (kills != 5 || restarts != 5) {
		t.Errorf("%d shim kills, %d restarts: want 5 each", kills, restarts)
	}
	if ok < cycles*8/10 {
		t.Errorf("only %d of %d cycles ran", ok, cycles)
	}

	// Stop the soaker, then check its stdout and file log.
	id := soakerID()
	pod.exec(ctx, t, id, "touch /tmp/stop")
	var n int
	waitFor(10*time.Second, func() bool {
		r := strings.TrimSpace(pod.exec(ctx, t, id, "cat /tmp/count 2>/dev/null || true"))
		_, err := fmt.Sscan(r, &n)
		return err == nil && n > 0
	})
	if n == 0 {
		t.Fatal("the soaker did not report its line count")
	}
	logPath := filepath.Join(cfg.LogDirectory, "soaker.log")
	if !waitFor(30*time.Second, func() bool { return strings.Contains(readFile(logPath), fmt.Sprintf("soak %d\n", n)) }) {
		t.Errorf("the soaker's last line never reached the CRI log")
	}
	assertCRILogLines(t, logPath, "soak ", n, restartWindows)
	pod.remove(ctx, t)
	assertFileSinkLines(t, filepath.Join(env.Dir, "podlogs", sinkName(t, pod.id)), "soak ", n)
	assertClean(t, env)
}

func expectedOut(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "out %d\n", i)
	}
	return b.String()
}

func procCmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// window is a stretch of time: a containerd restart, from the signal to
// containerd serving again.
type window struct{ from, to time.Time }

// assertCRILogLines checks that the CRI log holds lines "<prefix>1".."<prefix>n"
// once each. A line may be missing only where containerd itself dropped it:
// its CRI logger reads a container's output from the FIFO the shim writes
// and loses what it had read but not yet written when it is stopped. Such a
// line's neighbours were logged by the old containerd and the new one, so
// the gap between their timestamps spans a restart. A gap that spans none is
// the shim's loss and fails the test.
func assertCRILogLines(t *testing.T, path, prefix string, n int, restarts []window) {
	t.Helper()
	counts, logged := map[string]int{}, map[int]time.Time{}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// <RFC3339Nano time> <stream> <tag> <line>
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) != 4 || !strings.HasPrefix(fields[3], prefix) {
			continue
		}
		counts[fields[3]]++
		var i int
		if _, err := fmt.Sscan(strings.TrimPrefix(fields[3], prefix), &i); err == nil {
			if ts, err := time.Parse(time.RFC3339Nano, fields[0]); err == nil {
				logged[i] = ts
			}
		}
	}
	var atRestart []string
	for i := 1; i <= n; i++ {
		line := fmt.Sprintf("%s%d", prefix, i)
		if counts[line] != 0 {
			continue
		}
		before, okB := logged[i-1]
		after, okA := logged[i+1]
		for _, w := range restarts {
			if okB && okA && !before.After(w.to) && !after.Before(w.from) {
				atRestart = append(atRestart, line)
				counts[line] = 1 // containerd's loss, not the shim's
				break
			}
		}
	}
	if len(atRestart) > 0 {
		t.Logf("CRI log: %q dropped by containerd while it restarted (read from the FIFO, not yet written when it stopped)", atRestart)
	}
	checkCounts(t, "CRI log", counts, prefix, n)
}

// assertFileSinkLines checks that the file sink holds each line once.
func assertFileSinkLines(t *testing.T, sink, prefix string, n int) {
	t.Helper()
	if _, err := os.Stat(sink); err != nil {
		t.Fatalf("file sink: %v", err)
	}
	checkCounts(t, "file sink", sinkLines(t, sink), prefix, n)
}

func checkCounts(t *testing.T, where string, counts map[string]int, prefix string, n int) {
	t.Helper()
	var lost, repeated []string
	for i := 1; i <= n; i++ {
		switch line := fmt.Sprintf("%s%d", prefix, i); counts[line] {
		case 0:
			lost = append(lost, line)
		case 1:
		default:
			repeated = append(repeated, line)
		}
	}
	t.Logf("%s: %d lines, %d lost, %d repeated", where, n, len(lost), len(repeated))
	if len(lost)+len(repeated) > 0 {
		t.Errorf("%s: %d of %d lines lost (first %q), %d repeated (first %q)", where, len(lost), n, lost[:min(len(lost), 5)], len(repeated), repeated[:min(len(repeated), 5)])
	}
}
