package shim

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/sandbox"
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

// TestOwnerJournal: the file is a journal of changes. Reading it back gives
// the stack in order, with an update kept in place and records with limits
// matched by value; a torn last line is dropped, a torn line before others
// is an error; the stack of an earlier version (a JSON array) is read; the
// file goes once the stack is empty and is compacted when it grows.
func TestOwnerJournal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, resourcesFile)
	o, err := loadOwner(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	limits := &limitChange{Was: sandbox.CgroupLimits{Memory: 1 << 30}, Set: sandbox.CgroupLimits{Memory: 2 << 30}}
	for _, r := range []resource{
		{Kind: resBackend, Path: "/b"},
		{Kind: resPodLimits, Container: "sb", Path: "/kubepods/pod1", Limits: limits},
		{Kind: resDir, Container: "c1", Path: "/d"},
	} {
		if err := o.add(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.update(resource{Kind: resBackend, Path: "/b", Address: "in-process"}, nil); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, dir)
	if len(recs) != 3 || recs[0].Address != "in-process" || recs[1].Limits == nil || *recs[1].Limits != *limits {
		t.Fatalf("stack = %+v, want the updated backend first, then the pod limits and the dir", recs)
	}

	// Another process (a delete subcommand) reads the stack and forgets the
	// pod limits it read back: equal by value, not by pointer.
	other, err := loadOwner(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.forgetKind(resPodLimits, "sb"); err != nil {
		t.Fatal(err)
	}
	if recs := readRecords(t, dir); len(recs) != 2 || recs[1].Path != "/d" {
		t.Errorf("after forgetting the pod limits read back: %+v", recs)
	}

	// A writer that died mid-line.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"add":{"kind":"dir","path":"/tor`)
	f.Close()
	if recs := readRecords(t, dir); len(recs) != 2 {
		t.Errorf("a torn last line was not dropped: %+v", recs)
	}
	data, _ := os.ReadFile(path)
	if _, err := replay(append(data, []byte("\n"+`{"add":{"kind":"dir","path":"/x"}}`+"\n")...)); err == nil || !strings.Contains(err.Error(), "line 6") {
		t.Errorf("a torn line before others: %v, want an error naming line 6", err)
	}
	if recs, err := replay([]byte(`[{"kind":"dir","path":"/old"}]`)); err != nil || len(recs) != 1 || recs[0].Path != "/old" {
		t.Errorf("an earlier version's stack: %+v, %v", recs, err)
	}
	// A delete subcommand of this version appending to a pod of the
	// earlier version's shim.
	old := []byte(`[{"kind":"dir","path":"/old"},{"kind":"dir","path":"/old2"}]` + "\n" + `{"del":{"kind":"dir","path":"/old"}}` + "\n")
	if recs, err := replay(old); err != nil || len(recs) != 1 || recs[0].Path != "/old2" {
		t.Errorf("an earlier version's stack with lines appended: %+v, %v", recs, err)
	}

	// Compaction, then the file goes with the last record.
	if err := os.WriteFile(path, journal(readRecords(t, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err = loadOwner(dir, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		r := resource{Kind: resDir, Container: "churn", Path: strings.Repeat("p", 100)}
		if err := o.add(r, nil); err != nil {
			t.Fatal(err)
		}
		if err := o.forgetKind(resDir, "churn"); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := os.Stat(path); err != nil || st.Size() > journalCompactBytes {
		t.Errorf("journal after 400 adds and forgets: %v, %v; want it compacted below %d bytes", st.Size(), err, journalCompactBytes)
	}
	if err := o.releaseAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the journal of an empty stack: %v, want it removed", err)
	}
}
