package logfwd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

const helperEnv = "LOGFWD_HELPER_CONFIG"

// TestHelperCollector is not a test: it is the collector process that the
// SIGKILL and RSS tests start by re-executing the test binary.
func TestHelperCollector(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("helper process only")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		os.Exit(2)
	}
	c, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() {
		<-sig
		if err := c.Drain(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "drain:", err)
			os.Exit(3)
		}
		cancel()
	}()
	fmt.Println("READY")
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(4)
	}
	os.Exit(0)
}

func startHelper(t testing.TB, cfg Config) *exec.Cmd {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCollector$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "READY") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not start: %q", line)
	}
	return cmd
}

// sinkLines reads the "log" field of every complete JSON line.
func sinkLines(t testing.TB, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if !strings.HasSuffix(l, "\n") {
			continue
		}
		var m struct{ Log string }
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad sink line %q: %v", l, err)
		}
		out = append(out, m.Log)
	}
	return out
}

// TestSIGKILLLoop (R18): the collector process is SIGKILLed at random
// points while files are written and rotated (rename to a name the glob
// still matches); after each kill it restarts from its checkpoint. The
// multiset of lines in the sink equals the multiset written.
func TestSIGKILLLoop(t *testing.T) {
	kills, total := 25, 30000
	if testing.Short() {
		kills, total = 20, 10000
	}
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	dir := HostDir(root, "app", "/var/log/app")
	os.MkdirAll(dir, 0o755)
	cfg := Config{
		Root:           root,
		Watches:        []Watch{{Container: "app", Dir: "/var/log/app", Pattern: "*.log"}},
		Pod:            PodIdentity{Namespace: "ns", Name: "pod", UID: "u"},
		FileSink:       &FileSinkConfig{Path: filepath.Join(tmp, "sink.jsonl")},
		CheckpointPath: filepath.Join(tmp, "cp.json"),
		PollInterval:   200 * time.Millisecond,
		FlushTimeout:   time.Hour,
		MaxBatchBytes:  8 << 10, // many deliveries and checkpoints: many kill points
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t.Logf("%d kills at random points, %d lines", kills, total)

	writerDone := make(chan []string, 1)
	wrng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11)) // the writer's own
	go func() {
		rng := wrng
		var written []string
		f, _ := os.OpenFile(filepath.Join(dir, "app.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		rot := 0
		for len(written) < total {
			n := min(1+rng.IntN(40), total-len(written))
			var b strings.Builder
			for i := 0; i < n; i++ {
				l := fmt.Sprintf("line-%07d", len(written))
				written = append(written, l)
				b.WriteString(l + "\n")
			}
			f.WriteString(b.String())
			if len(written)/3000 > rot { // rename rotation, the new name still matches
				rot++
				os.Rename(filepath.Join(dir, "app.log"), filepath.Join(dir, fmt.Sprintf("app.%03d.log", rot)))
				f.Close()
				f, _ = os.OpenFile(filepath.Join(dir, "app.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
			}
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		}
		f.Close()
		writerDone <- written
	}()
	for i := 0; i < kills; i++ {
		cmd := startHelper(t, cfg)
		time.Sleep(time.Duration(20+rng.IntN(250)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	written := <-writerDone
	cmd := startHelper(t, cfg)
	waitFor(30*time.Second, func() bool { return len(sinkLines(t, cfg.FileSink.Path)) >= len(written) })
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper exit: %v", err)
	}
	if err := sameMultiset(sinkLines(t, cfg.FileSink.Path), written); err != nil {
		t.Fatal(err)
	}
}

// TestCrashBeforeCheckpoint: the collector dies right after the file sink
// accepted a batch and before any checkpoint recorded it (checkpoints of a
// positioned sink are deferred up to checkpointEvery). A new collector cuts
// the sink back and reads again: every line exactly once.
func TestCrashBeforeCheckpoint(t *testing.T) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	dir := HostDir(root, "app", "/var/log/app")
	os.MkdirAll(dir, 0o755)
	var want []string
	var b strings.Builder
	for i := 0; i < 2000; i++ {
		l := fmt.Sprintf("line-%05d", i)
		want = append(want, l)
		b.WriteString(l + "\n")
	}
	os.WriteFile(filepath.Join(dir, "a.log"), []byte(b.String()), 0o644)
	cfg := Config{Root: root, Watches: []Watch{{Container: "app", Dir: "/var/log/app", Pattern: "*.log"}},
		FileSink: &FileSinkConfig{Dir: tmp, Name: "sink.jsonl"}, CheckpointPath: filepath.Join(tmp, "cp.json"),
		MaxBatchBytes: 8 << 10}
	crashed := make(chan struct{})
	batches := 0
	crashCfg := cfg
	crashCfg.Observer = func(string, []Record) {
		if batches++; batches == 5 {
			close(crashed)
			runtime.Goexit() // dies holding everything, as SIGKILL would leave it
		}
	}
	c, err := New(crashCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	go c.Drain(context.Background())
	<-crashed
	if n := len(sinkLines(t, filepath.Join(tmp, "sink.jsonl"))); n == 0 {
		t.Fatal("nothing reached the sink before the crash")
	}
	c2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sameMultiset(sinkLines(t, filepath.Join(tmp, "sink.jsonl")), want); err != nil {
		t.Fatal(err)
	}
}
