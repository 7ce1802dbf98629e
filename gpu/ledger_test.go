package gpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func fakeDevices(t *testing.T, fixture string) []Device {
	t.Helper()
	inv, err := NewFake(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	devs, err := inv.Devices()
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

func newTestLedger(t *testing.T) *Ledger {
	t.Helper()
	return NewLedger(Config{StateDir: t.TempDir()}, nil)
}

func TestLedgerAllocate(t *testing.T) {
	t4 := fakeDevices(t, "t4.json")
	tests := []struct {
		name     string
		before   []Request // allocated to pods "a0", "a1", ... first
		req      Request
		wantIdx  []int
		wantErr  string
		wantKind error
	}{
		{"one", nil, Request{Count: 1}, []int{0}, "", nil},
		{"lowest free first", []Request{{Count: 2}}, Request{Count: 2}, []int{2, 3}, "", nil},
		{"model", nil, Request{Count: 4, Model: "T4"}, []int{0, 1, 2, 3}, "", nil},
		{"by index and uuid", nil, Request{IDs: []string{"3", t4[1].UUID}}, []int{3, 1}, "", nil},
		{"all", nil, Request{All: true}, []int{0, 1, 2, 3}, "", nil},
		{"exhausted", []Request{{Count: 3}}, Request{Count: 2, Source: "annotation gpu.cci.io/count"}, nil,
			`annotation gpu.cci.io/count "2" asks for more GPUs than are free (node has 4, 1 free); allowed: at most 1 now`, ErrUnavailable},
		{"missing model", nil, Request{Count: 1, Model: "V100"}, nil,
			`gpu.cci.io/model "V100" is not available on this node; allowed: Tesla T4`, ErrUnavailable},
		{"missing driver", nil, Request{Count: 1, DriverVersion: "418.126"}, nil,
			`gpu.cci.io/driver-version "418.126" is not available on this node; allowed: 470.82.01`, ErrUnavailable},
		{"unknown id", nil, Request{IDs: []string{"9"}, Source: "env NVIDIA_VISIBLE_DEVICES"}, nil,
			`env NVIDIA_VISIBLE_DEVICES "9" is not a GPU of this node`, ErrUnavailable},
		{"busy id", []Request{{IDs: []string{"2"}}}, Request{IDs: []string{"2"}}, nil, `"2" is in use by another pod`, ErrUnavailable},
		{"all while busy", []Request{{Count: 1}}, Request{All: true}, nil, `asks for all 4 GPUs but 1 are in use`, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLedger(t)
			for i, r := range tt.before {
				if _, err := l.Allocate(fmt.Sprintf("a%d", i), r, t4); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := l.List()
			got, err := l.Allocate("pod", tt.req, t4)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if !errors.Is(err, tt.wantKind) {
					t.Errorf("err %v is not %v", err, tt.wantKind)
				}
				after, _ := l.List()
				if len(after) != len(before) {
					t.Errorf("failed Allocate changed the ledger: %v -> %v", before, after)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var idx []int
			for _, d := range got {
				idx = append(idx, d.Index)
			}
			if fmt.Sprint(idx) != fmt.Sprint(tt.wantIdx) {
				t.Errorf("got indexes %v, want %v", idx, tt.wantIdx)
			}
		})
	}
}

func TestLedgerDriverFromConfig(t *testing.T) {
	devs := fakeDevices(t, "p4.json")
	l := NewLedger(Config{StateDir: t.TempDir(), Drivers: map[string]DriverDirs{
		"418.126": {LibDir: "/l", BinDir: "/b"}, "450.80.02": {LibDir: "/l2", BinDir: "/b2"}}}, nil)
	if _, err := l.Allocate("p1", Request{Count: 1, DriverVersion: "418.126"}, devs); err != nil {
		t.Fatal(err)
	}
	_, err := l.Allocate("p2", Request{Count: 1, DriverVersion: "535.104.05"}, devs)
	if err == nil || !strings.Contains(err.Error(), "allowed: 418.126, 450.80.02") {
		t.Fatalf("err = %v", err)
	}
}

func TestLedgerReleaseAndIdempotence(t *testing.T) {
	devs := fakeDevices(t, "v100-16gb.json")
	l := newTestLedger(t)
	first, err := l.Allocate("p1", Request{Count: 8}, devs)
	if err != nil {
		t.Fatal(err)
	}
	again, err := l.Allocate("p1", Request{Count: 8}, devs)
	if err != nil || fmt.Sprint(uuids(again)) != fmt.Sprint(uuids(first)) {
		t.Fatalf("second Allocate for the same pod = %v, %v", uuids(again), err)
	}
	if _, err := l.Allocate("p2", Request{Count: 1}, devs); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("allocation on a full node: %v", err)
	}
	if err := l.Release("p1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Release("p1"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if got, err := l.Allocate("p2", Request{Count: 8}, devs); err != nil || len(got) != 8 {
		t.Fatalf("after release: %d, %v", len(got), err)
	}
}

// TestLedgerPersistsAndReconciles is the shim-crash story: the ledger outlives the
// process that wrote it, and Reconcile frees the GPUs of sandboxes that are gone.
func TestLedgerPersistsAndReconciles(t *testing.T) {
	devs := fakeDevices(t, "v100-32gb.json")
	cfg := Config{StateDir: t.TempDir()}
	l := NewLedger(cfg, nil)
	for _, p := range []string{"alive", "dead1", "dead2"} {
		if _, err := l.Allocate(p, Request{Count: 2}, devs); err != nil {
			t.Fatal(err)
		}
	}
	// A shim that crashed in the middle of a write leaves a temporary file behind.
	if err := os.WriteFile(filepath.Join(cfg.StateDir, ".gpu-ledger-123.tmp"), []byte(`{"trunc`), 0o600); err != nil {
		t.Fatal(err)
	}
	l2 := NewLedger(cfg, nil) // a new process
	list, err := l2.List()
	if err != nil || len(list) != 3 {
		t.Fatalf("List after restart = %v, %v", list, err)
	}
	gone, err := l2.Reconcile(map[string]bool{"alive": true})
	if err != nil || fmt.Sprint(gone) != "[dead1 dead2]" {
		t.Fatalf("Reconcile = %v, %v", gone, err)
	}
	got, err := l2.Allocate("new", Request{Count: 6}, devs)
	if err != nil || len(got) != 6 {
		t.Fatalf("Allocate after reconcile = %d, %v", len(got), err)
	}
}

func TestLedgerCorruptIsAnError(t *testing.T) {
	cfg := Config{StateDir: t.TempDir()}
	if err := os.WriteFile(cfg.LedgerPath(), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := NewLedger(cfg, nil).Allocate("p", Request{Count: 1}, fakeDevices(t, "t4.json"))
	if err == nil || !strings.Contains(err.Error(), "parsing ledger") {
		t.Fatalf("err = %v; a corrupt ledger must not be reset silently", err)
	}
}

func TestLedgerConcurrentGoroutines(t *testing.T) {
	devs := fakeDevices(t, "v100-16gb.json")
	l := newTestLedger(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	owner := map[string]string{}
	ok, unavailable := 0, 0
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := fmt.Sprintf("pod-%d", i)
			got, err := l.Allocate(pod, Request{Count: 1}, devs)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
				for _, d := range got {
					if prev, dup := owner[d.UUID]; dup {
						t.Errorf("%s given to %s and %s", d.UUID, prev, pod)
					}
					owner[d.UUID] = pod
				}
			case errors.Is(err, ErrUnavailable):
				unavailable++
			default:
				t.Errorf("%s: %v", pod, err)
			}
		}()
	}
	wg.Wait()
	if ok != 8 || unavailable != 42 || len(owner) != 8 {
		t.Fatalf("%d succeeded, %d unavailable, %d GPUs handed out; want 8, 42, 8", ok, unavailable, len(owner))
	}
	list, err := l.List()
	if err != nil || len(list) != 8 {
		t.Fatalf("ledger holds %d allocations, %v", len(list), err)
	}
}
