package tests

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestCtrRun covers `ctr run --runtime io.containerd.cci.v2`: exit statuses,
// stdout and stderr, a 20 MB stream byte for byte, and the 20 GiB block
// device root.
func TestCtrRun(t *testing.T) { forEachBackend(t, testCtrRun) }

func testCtrRun(t *testing.T, b testBackend) {
	env := b.startEnv(t, false, unthrottledStdio)

	t.Run("exit status and streams", func(t *testing.T) {
		for _, code := range []int{0, 3} {
			out, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, fmt.Sprintf("exit%d", code),
				"sh", "-c", fmt.Sprintf("echo to-stdout; echo to-stderr >&2; exit %d", code))
			if got := exitCode(t, err); got != code {
				t.Fatalf("exit status = %d, want %d (stderr %q)", got, code, errOut)
			}
			if out != "to-stdout\n" || !strings.Contains(errOut, "to-stderr\n") {
				t.Errorf("stdout %q, stderr %q", out, errOut)
			}
		}
	})

	t.Run("20 MB of random bytes, exact", func(t *testing.T) {
		// The container hashes what it writes; both streams are checked.
		// head -c, not dd bs=1000000: gVisor 20221219 returns short reads
		// of /dev/urandom, so dd would write 19,004,068 bytes.
		script := "head -c 20000000 /dev/urandom > /tmp/d && sha256sum /tmp/d | cut -c1-64 >&2 && cat /tmp/d"
		out, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "bytes-out", "sh", "-c", script)
		if err != nil {
			t.Fatalf("run: %v: %s", err, errOut)
		}
		if len(out) != 20_000_000 {
			t.Fatalf("stdout carried %d bytes, want 20000000", len(out))
		}
		if want := strings.TrimSpace(lastLine(errOut)); sha(out) != want {
			t.Errorf("stdout sha256 %s, container wrote %s", sha(out), want)
		}
		script = "head -c 20000000 /dev/urandom > /tmp/d && sha256sum /tmp/d | cut -c1-64 && cat /tmp/d >&2"
		out, errOut, err = env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "bytes-err", "sh", "-c", script)
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		// ctr may print its own warnings on stderr before the data.
		data := errOut[len(errOut)-min(len(errOut), 20_000_000):]
		if sha(data) != strings.TrimSpace(out) {
			t.Errorf("stderr sha256 %s, container wrote %s", sha(data), strings.TrimSpace(out))
		}
	})

	t.Run("root is a 20 GiB block device", func(t *testing.T) {
		if b.isGVisor() {
			gvisorRootDevice(t, env) // the sandbox sees it through its gofer
			return
		}
		out, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "rootfs",
			"sh", "-c", "grep ' / ' /proc/mounts; df -k / | tail -1")
		if err != nil {
			t.Fatalf("run: %v: %s", err, errOut)
		}
		m := regexp.MustCompile(`(?m)^(/dev/loop\d+) / (\S+) `).FindStringSubmatch(out)
		if m == nil || m[2] == "overlay" {
			t.Fatalf("container root is not a loop block device:\n%s", out)
		}
		fields := strings.Fields(lastLine(out))
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		// ext4 keeps some of the device for itself: expect 19-20 GiB.
		if kb < 19<<20 || kb > 20<<20 {
			t.Errorf("root size %d KiB, want about 20 GiB:\n%s", kb, out)
		}
		t.Logf("container root: %s (%s), %d KiB", m[1], m[2], kb)
	})
	assertNoLeaks(t, env)
}

// TestCtrTaskVerbs covers exec, ps, pause/resume, metrics and kill on a
// running task, and that one cci shim plus one backend shim serve it.
func TestCtrTaskVerbs(t *testing.T) { forEachBackend(t, testCtrTaskVerbs) }

func testCtrTaskVerbs(t *testing.T, b testBackend) {
	env := b.startEnv(t, false)
	const id = "verbs"
	// PID 1 of a pid namespace ignores SIGTERM unless it handles it.
	if _, errOut, err := env.CtrRun("-d", "--runtime", cciRuntime, env.Image, id, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"); err != nil {
		t.Fatalf("run -d: %v: %s", err, errOut)
	}
	out, _, err := env.Ctr("task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo exec-output; exit 7")
	if exitCode(t, err) != 7 || out != "exec-output\n" {
		t.Errorf("exec: status %d, output %q; want 7, %q", exitCode(t, err), out, "exec-output\n")
	}
	if out, _, err := env.Ctr("task", "ps", id); err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) < 2 {
		t.Errorf("task ps: %v\n%s", err, out)
	}
	if _, _, err := env.Ctr("task", "pause", id); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if out, _, _ := env.Ctr("task", "ls"); !strings.Contains(out, "PAUSED") {
		t.Errorf("after pause, task ls:\n%s", out)
	}
	if _, _, err := env.Ctr("task", "resume", id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if out, _, _ := env.Ctr("task", "ls"); !strings.Contains(out, "RUNNING") {
		t.Errorf("after resume, task ls:\n%s", out)
	}
	if out, _, err := env.Ctr("task", "metrics", id); err != nil || !strings.Contains(out, "memory") {
		t.Errorf("task metrics: %v\n%s", err, out)
	}
	cci, runc := env.ShimPIDs(e2eenv.CCIShimBinary), env.ShimPIDs(e2eenv.RuncShimBinary)
	if len(cci) != 1 || len(runc) != 0 {
		t.Errorf("shims serving the task: cci %v, runc %v; want one cci shim, the runc task service in it", cci, runc)
	} else {
		t.Logf("cci shim RSS with a running container: %d KiB", e2eenv.RSS(cci[0])>>10)
	}
	if _, _, err := env.Ctr("task", "kill", "-s", "SIGTERM", id); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if !waitFor(10*time.Second, func() bool { out, _, _ := env.Ctr("task", "ls"); return strings.Contains(out, "STOPPED") }) {
		out, _, _ := env.Ctr("task", "ls")
		t.Fatalf("task did not stop after SIGTERM:\n%s", out)
	}
	env.Ctr("task", "rm", id)
	env.Ctr("container", "rm", id)
	assertNoLeaks(t, env)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
