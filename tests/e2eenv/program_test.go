package e2eenv

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

var _ TB = (*Program)(nil)

func TestProgramRunsCleanupsLIFOAndRecoversFatal(t *testing.T) {
	var log bytes.Buffer
	h := NewProgram(&log)
	var order []int
	err := h.Run(func() error {
		h.Cleanup(func() { order = append(order, 1) })
		h.Cleanup(func() { order = append(order, 2); h.Fatalf("cleanup fails") })
		h.Cleanup(func() { order = append(order, 3) })
		h.Fatalf("boom %d", 7)
		t.Fatal("Fatalf returned")
		return nil
	})
	if err == nil || err.Error() != "boom 7" {
		t.Errorf("Run = %v, want the Fatalf message", err)
	}
	if want := []int{3, 2, 1}; len(order) != 3 || order[0] != 3 || order[1] != 2 || order[2] != 1 {
		t.Errorf("cleanup order %v, want %v", order, want)
	}
	if !h.Failed() || !strings.Contains(log.String(), "cleanup fails") {
		t.Errorf("failed %v, log %q", h.Failed(), log.String())
	}
}

func TestProgramResults(t *testing.T) {
	h := NewProgram(io.Discard)
	want := errors.New("plain")
	if err := h.Run(func() error { return want }); err != want {
		t.Errorf("Run = %v, want fn's error", err)
	}
	h = NewProgram(io.Discard)
	if err := h.Run(func() error { h.Errorf("x"); return nil }); err == nil {
		t.Error("Run after Errorf = nil, want an error")
	}
	h = NewProgram(io.Discard)
	if err := h.Run(func() error { h.Skipf("no %s", "root"); return nil }); err == nil || !strings.Contains(err.Error(), "cannot run: no root") {
		t.Errorf("Run after Skipf = %v, want a fatal error", err)
	}
	h = NewProgram(io.Discard)
	ran := false
	func() {
		defer func() {
			if r := recover(); r != "other" {
				t.Errorf("recovered %v, want the re-raised panic", r)
			}
		}()
		h.Run(func() error { h.Cleanup(func() { ran = true }); panic("other") })
	}()
	if !ran {
		t.Error("cleanup did not run before a foreign panic was re-raised")
	}
}
