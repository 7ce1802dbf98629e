package shim

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOwnerReleasesNewestFirst: live closers run newest first; a failing
// one stays recorded (in memory and on disk) for a later teardown, and the
// walk goes on past it.
func TestOwnerReleasesNewestFirst(t *testing.T) {
	dir := t.TempDir()
	o, err := loadOwner(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	fail := true
	closer := func(name string) func(context.Context) error {
		return func(context.Context) error {
			order = append(order, name)
			if name == "b" && fail {
				return errors.New("busy")
			}
			return nil
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := o.add(resource{Kind: resDir, Container: "c1", Path: "/x/" + n}, closer(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.add(resource{Kind: resDir, Container: "c2", Path: "/x/d"}, closer("d")); err != nil {
		t.Fatal(err)
	}
	err = o.releaseContainer(context.Background(), "c1")
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("release error = %v, want the failing closer's", err)
	}
	if got := strings.Join(order, ""); got != "cba" {
		t.Errorf("release order = %s, want cba (newest first, past the failure)", got)
	}
	recs := readRecords(t, dir)
	if len(recs) != 2 || recs[0].Path != "/x/b" || recs[1].Path != "/x/d" {
		t.Errorf("records after a partial release = %+v, want b (failed) and d (other container)", recs)
	}
	fail, order = false, nil
	if err := o.releaseAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ""); got != "db" {
		t.Errorf("second release order = %s, want db", got)
	}
	if recs := readRecords(t, dir); len(recs) != 0 || !o.empty() {
		t.Errorf("records left: %+v", recs)
	}
}

// TestOwnerAfterCrash: a new process reads the records and releases them
// with the releaser; two such processes releasing different containers at
// once (containerd's delete subcommands) keep the file consistent.
func TestOwnerAfterCrash(t *testing.T) {
	dir := t.TempDir()
	first, err := loadOwner(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"c1", "c2"} {
		for _, n := range []string{"x", "y", "z"} {
			if err := first.add(resource{Kind: resDir, Container: c, Path: "/" + c + "/" + n}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := first.add(resource{Kind: resVolumes, Path: "/pod"}, nil); err != nil {
		t.Fatal(err)
	}
	// The first process dies. Two delete subcommands start.
	var mu sync.Mutex
	released := map[string]int{}
	releaser := func(ctx context.Context, r resource) error {
		mu.Lock()
		released[r.Path]++
		mu.Unlock()
		time.Sleep(time.Millisecond)
		return nil
	}
	var wg sync.WaitGroup
	for _, c := range []string{"c1", "c2"} {
		o, err := loadOwner(dir, releaser)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.releaseContainer(context.Background(), c); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	recs := readRecords(t, dir)
	if len(recs) != 1 || recs[0].Path != "/pod" {
		t.Errorf("records after both containers' release = %+v, want the pod's volumes only", recs)
	}
	for _, p := range []string{"/c1/x", "/c1/y", "/c1/z", "/c2/x", "/c2/y", "/c2/z"} {
		if released[p] != 1 {
			t.Errorf("%s released %d times, want once", p, released[p])
		}
	}
	last, err := loadOwner(dir, releaser)
	if err != nil {
		t.Fatal(err)
	}
	if left, err := last.containersOnDisk(); err != nil || len(left) != 0 {
		t.Errorf("containers on disk = %v (%v), want none", left, err)
	}
	if err := last.releaseAll(context.Background()); err != nil || released["/pod"] != 1 {
		t.Errorf("pod release: %v, released %d", err, released["/pod"])
	}
}

// TestProcIdentity: a recorded process is only killed while its start time
// still matches: a reused pid is left alone.
func TestProcIdentity(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	go cmd.Wait()
	p, err := identify(cmd.Process.Pid)
	if err != nil || !p.alive() {
		t.Fatalf("identify: %+v, %v", p, err)
	}
	stale := p
	stale.StartTime-- // the same pid, an earlier process: reused
	if stale.alive() {
		t.Fatal("a process with another start time counts as alive")
	}
	if err := stale.kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if !p.alive() {
		t.Fatal("killing a stale identity killed the live process")
	}
	if !p.stop(context.Background(), 0) || p.alive() {
		t.Fatal("stop of the recorded process did not end it")
	}
}
