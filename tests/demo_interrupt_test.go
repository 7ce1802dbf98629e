package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestDemoInterrupted interrupts `make run`'s demo mid-run, as a person does
// with ^C (SIGINT to the process group) or a supervisor with SIGTERM, and
// checks it stops, exits 128+signal and leaves nothing behind: no
// containerd, shim or container process, mount, loop device, CNI bridge,
// cgroup or temp dir.
func TestDemoInterrupted(t *testing.T) {
	testutil.RequireRoot(t, "the demo runs containerd")
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	demo := filepath.Join(repo, "bin", "ccidemo")
	if _, err := os.Stat(demo); err != nil {
		testutil.Unavailable(t, "%s is missing: run make build", demo)
	}
	for _, tc := range []struct {
		name  string
		at    string // stop when the demo prints this
		sig   syscall.Signal
		group bool
	}{
		{"SIGINT to the group at R9 (a ^C)", "-- R9", syscall.SIGINT, true},
		{"SIGTERM to the demo during R8", "-- R8", syscall.SIGTERM, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, demo)
			cmd.Dir = repo
			cmd.Env = os.Environ()
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var out strings.Builder
			reached := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				sc := bufio.NewScanner(stdout)
				once := false
				for sc.Scan() {
					mu.Lock()
					out.WriteString(sc.Text() + "\n")
					mu.Unlock()
					if !once && strings.HasPrefix(sc.Text(), tc.at) {
						once = true
						close(reached)
					}
				}
			}()
			select {
			case <-reached:
			case <-done:
				t.Fatalf("the demo ended before %q: %v\n%s\n%s", tc.at, cmd.Wait(), out.String(), stderr.String())
			}
			target := cmd.Process.Pid
			if tc.group {
				target = -target
			}
			if err := syscall.Kill(target, tc.sig); err != nil {
				t.Fatal(err)
			}
			<-done
			err = cmd.Wait()
			mu.Lock()
			log := out.String()
			mu.Unlock()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 128+int(tc.sig) {
				t.Errorf("exit: %v, want status %d\n%s", err, 128+int(tc.sig), stderr.String())
			}
			if !strings.Contains(stderr.String(), "ccidemo: interrupted by") || !strings.Contains(log, "stopping at the next step") {
				t.Errorf("no interrupt message; stderr %q", stderr.String())
			}
			if strings.Contains(log, "-- end:") {
				t.Errorf("the demo ran to its end instead of stopping")
			}
			for _, l := range demoLeaks(log) {
				t.Errorf("left behind: %s", l)
			}
			if t.Failed() {
				t.Logf("demo output:\n%s", log)
			}
		})
	}
}

var (
	envLine   = regexp.MustCompile(`e2eenv: dir (/tmp/cci-e2e-(\d+)), namespace (\S+),`)
	podIDLine = regexp.MustCompile(`(?m)^   \| ([0-9a-f]{64})$`)
	ctrIDLine = regexp.MustCompile(`(?m)^   \| ([0-9a-f]{13}) {2,}`)
)

// demoLeaks lists what the demo whose log this is left on the host.
func demoLeaks(log string) []string {
	m := envLine.FindStringSubmatch(log)
	if m == nil {
		return []string{"(the demo never said where its env is)"}
	}
	dir, suffix, ns := m[1], m[2], m[3]
	var leaks []string
	if _, err := os.Stat(dir); err == nil {
		leaks = append(leaks, "dir "+dir)
	}
	// Processes: containerd, shims and containers all run with the dir in
	// their command line, environment or working directory.
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		cmdline, _ := os.ReadFile(p + "/cmdline")
		cwd, _ := os.Readlink(p + "/cwd")
		if strings.Contains(string(cmdline), dir) || strings.HasPrefix(cwd, dir) {
			leaks = append(leaks, fmt.Sprintf("process %s: %s", filepath.Base(p), strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), " "+dir) {
		leaks = append(leaks, "mounts under "+dir)
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.HasPrefix(string(b), dir) {
			leaks = append(leaks, "loop device "+f+": "+strings.TrimSpace(string(b)))
		}
	}
	// The env's CNI bridge: e2eenv names it cci-e2e + the last 8 characters of the dir's suffix.
	if len(suffix) > 8 {
		suffix = suffix[len(suffix)-8:]
	}
	if _, err := os.Stat("/sys/class/net/cci-e2e" + suffix); err == nil {
		leaks = append(leaks, "network link cci-e2e"+suffix)
	}
	// Cgroups of the env's namespace, its pod and its containers.
	ids := []string{ns}
	for _, m := range podIDLine.FindAllStringSubmatch(log, -1) {
		ids = append(ids, m[1])
	}
	for _, m := range ctrIDLine.FindAllStringSubmatch(log, -1) {
		ids = append(ids, m[1])
	}
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Count(p, "/") > 7 {
			return filepath.SkipDir
		}
		for _, id := range ids {
			if strings.HasPrefix(filepath.Base(p), id) || strings.Contains(p, "/"+e2eenv.CRINamespace+"/"+id) {
				leaks = append(leaks, "cgroup "+p)
				return filepath.SkipDir
			}
		}
		return nil
	})
	return leaks
}

// TestDemoRuns runs the demo to its end: every step as shown, nothing left.
func TestDemoRuns(t *testing.T) {
	testutil.RequireRoot(t, "the demo runs containerd")
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	demo := filepath.Join(repo, "bin", "ccidemo")
	if _, err := os.Stat(demo); err != nil {
		testutil.Unavailable(t, "%s is missing: run make build", demo)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, demo)
	cmd.Dir = repo
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ccidemo: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	log := stdout.String()
	for _, want := range []string{"$ crictl runp --runtime cci pod.json", "$ crictl ps --pod", "refused: container \"refused\": sysctl \"kernel.panic\" is not allowed",
		"/dev/loop", "150 records, 150 distinct lines", "no shim, container, mount, loop device or socket left behind"} {
		if !strings.Contains(log, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	for _, l := range demoLeaks(log) {
		t.Errorf("left behind: %s", l)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", log)
	}
}
