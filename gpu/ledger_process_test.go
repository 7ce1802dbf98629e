package gpu

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment of the re-exec'ed test binary (one process per "shim").
const (
	envHelper = "CCI_GPU_LEDGER_HELPER" // "allocate" or "hold-lock"
	envState  = "CCI_GPU_STATE_DIR"
	envPod    = "CCI_GPU_POD"
	envGo     = "CCI_GPU_GO_FILE"
)

// TestLedgerHelperProcess is not a test: it is the body of a child process.
func TestLedgerHelperProcess(t *testing.T) {
	mode := os.Getenv(envHelper)
	if mode == "" {
		t.Skip("helper process for the multi-process ledger tests")
	}
	cfg := Config{StateDir: os.Getenv(envState)}
	switch mode {
	case "allocate":
		// Wait at the barrier so that every child races for the lock at once.
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, err := os.Stat(os.Getenv(envGo)); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		inv, err := NewFake(filepath.Join("testdata", "v100-32gb.json"))
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(2)
		}
		devs, _ := inv.Devices()
		got, err := NewLedger(cfg, nil).Allocate(os.Getenv(envPod), Request{Count: 1}, devs)
		switch {
		case err == nil:
			fmt.Println("ALLOC", strings.Join(uuids(got), ","))
		case errors.Is(err, ErrUnavailable):
			fmt.Println("UNAVAILABLE")
		default:
			fmt.Println("ERROR", err)
		}
		// Exit without releasing: a shim that dies keeps its GPUs until reconciled.
		os.Exit(0)
	case "hold-lock":
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			os.Exit(2)
		}
		if _, err := lockFile(cfg.LedgerPath()+".lock", true); err != nil {
			os.Exit(2)
		}
		fmt.Println("LOCKED")
		time.Sleep(time.Minute) // killed by the parent
		os.Exit(0)
	}
}

func helperCmd(t *testing.T, mode, state, pod, goFile string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestLedgerHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelper+"="+mode, envState+"="+state, envPod+"="+pod, envGo+"="+goFile)
	return cmd
}

// TestLedgerConcurrentProcesses proves the flock: 50 separate processes ask for
// one GPU each of an 8-GPU node; exactly 8 get one and no GPU is given twice.
func TestLedgerConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns 50 processes")
	}
	state := t.TempDir()
	goFile := filepath.Join(t.TempDir(), "go")
	const n = 50
	outs := make([]string, n)
	var wg sync.WaitGroup
	cmds := make([]*exec.Cmd, n)
	var bufs [n]strings.Builder
	for i := range cmds {
		cmds[i] = helperCmd(t, "allocate", state, fmt.Sprintf("pod-%d", i), goFile)
		cmds[i].Stdout = &bufs[i]
		cmds[i].Stderr = &bufs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Wait(); err != nil {
				t.Errorf("child %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	owner := map[string]int{}
	ok, unavailable := 0, 0
	for i := range bufs {
		outs[i] = bufs[i].String()
		for _, line := range strings.Split(outs[i], "\n") {
			switch {
			case strings.HasPrefix(line, "ALLOC "):
				ok++
				u := strings.TrimPrefix(line, "ALLOC ")
				if prev, dup := owner[u]; dup {
					t.Errorf("%s given to child %d and child %d", u, prev, i)
				}
				owner[u] = i
			case line == "UNAVAILABLE":
				unavailable++
			case strings.HasPrefix(line, "ERROR"):
				t.Errorf("child %d: %s", i, line)
			}
		}
	}
	if ok != 8 || unavailable != n-8 {
		t.Fatalf("%d children allocated, %d were refused; want 8 and %d", ok, unavailable, n-8)
	}
	// The children are gone without releasing: reconcile against no live sandboxes.
	l := NewLedger(Config{StateDir: state}, nil)
	gone, err := l.Reconcile(map[string]bool{})
	if err != nil || len(gone) != 8 {
		t.Fatalf("Reconcile freed %v, %v; want 8 pods", gone, err)
	}
}

// TestLedgerLockDiesWithProcess: a shim killed while holding the lock does not
// block the node.
func TestLedgerLockDiesWithProcess(t *testing.T) {
	state := t.TempDir()
	cmd := helperCmd(t, "hold-lock", state, "", "")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); !strings.Contains(string(buf[:n]), "LOCKED") {
		t.Fatalf("helper did not lock: %q", buf[:n])
	}
	l := NewLedger(Config{StateDir: state}, nil)
	done := make(chan error, 1)
	go func() {
		_, err := l.Allocate("p", Request{Count: 1}, fakeDevices(t, "t4.json"))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Allocate did not wait for the lock holder: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Allocate still blocked after the lock holder died")
	}
}
