package shim

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/cci-shim/cci-shim/shim/podstats"
)

// TestNextStatsWait: a change brings the stats file back to a rewrite a
// second; unchanged figures double the wait up to ten seconds.
func TestNextStatsWait(t *testing.T) {
	wait := statsMinInterval
	var got []time.Duration
	for range 6 {
		wait = nextStatsWait(wait, false)
		got = append(got, wait)
	}
	want := []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits while unchanged = %v, want %v", got, want)
		}
	}
	if w := nextStatsWait(statsMaxInterval, true); w != statsMinInterval {
		t.Errorf("wait after a change = %v, want %v", w, statsMinInterval)
	}
}

// TestStatsFile: a created container brings the stats file within a second
// or so, not after the empty pod's ten; the figures the writer compares
// leave the time out, so an idle pod's rewrites compare equal, and output
// forwarded changes them.
func TestStatsFile(t *testing.T) {
	p := newTestPod(t, 1_000_000) // the throttled copy counts what it forwards
	stdout, front := p.frontFIFO("c1")
	if _, err := p.create("c1", stdout, oci.WithProcessArgs("/bin/true")); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	path := filepath.Join(p.svc.podDir, podstats.File)
	var doc podstats.Pod
	for {
		data, err := os.ReadFile(path)
		if err == nil && json.Unmarshal(data, &doc) == nil {
			break
		}
		if time.Since(created) > statsMaxInterval/2 {
			t.Fatalf("no stats file %v after Create (the empty pod's wait is %v): %v", time.Since(created), statsMaxInterval, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := doc.Containers["c1"]; !ok || doc.Time.IsZero() {
		t.Fatalf("stats file = %+v, want c1 and the time it was written", doc)
	}
	t.Logf("stats file written %v after Create", time.Since(created).Round(10*time.Millisecond))

	idle1 := p.svc.writeStats()
	idle2 := p.svc.writeStats()
	if idle1 == nil || !bytes.Equal(idle1, idle2) {
		t.Fatalf("two rewrites of an idle pod's figures differ:\n%s\n%s", idle1, idle2)
	}
	go io.Copy(io.Discard, front)
	p.backend.exit("c1", []byte("hello\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		var now podstats.Pod
		if err := json.Unmarshal(p.svc.writeStats(), &now); err != nil {
			t.Fatal(err)
		}
		if now.Containers["c1"].Stdio.BytesForwarded == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("figures after 6 bytes of output: %+v", now.Containers["c1"].Stdio)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
