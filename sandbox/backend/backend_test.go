package backend

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/config"
)

func fakeBinary(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRefusesMissingBinary(t *testing.T) {
	cfg := config.Default()
	cfg.Backend = config.Backend{Kind: config.BackendKata, Binary: "containerd-shim-nonexistent-v2"}
	_, err := New(cfg)
	if !errors.Is(err, ErrBinaryNotFound) || !strings.Contains(err.Error(), "containerd-shim-nonexistent-v2") {
		t.Fatalf("err = %v, want ErrBinaryNotFound naming the binary", err)
	}
}

func TestRuncOptions(t *testing.T) {
	cfg := config.Default()
	cfg.Backend = config.Backend{Kind: config.BackendRunc, Binary: fakeBinary(t, "containerd-shim-runc-v2"), RuncRoot: "/run/x/runc"}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	any, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	var o options.Options
	if err := typeurl.UnmarshalTo(any, &o); err != nil || o.Root != "/run/x/runc" {
		t.Fatalf("runc options = %+v (%v), want root /run/x/runc", &o, err)
	}
}

func TestKata(t *testing.T) {
	cfg := config.Default()
	cfg.Backend = config.Backend{Kind: config.BackendKata, Binary: fakeBinary(t, "containerd-shim-kata-v2"), ConfigPath: "/etc/kata/c.toml"}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	any, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	var o runtimeoptions.Options
	if err := typeurl.UnmarshalTo(any, &o); err != nil || o.ConfigPath != "/etc/kata/c.toml" {
		t.Fatalf("kata options = %+v (%v)", &o, err)
	}
	for _, tc := range []struct {
		size       PodSize
		vcpus, mib string
	}{
		{PodSize{MilliCPU: 250, MemoryBytes: 1 << 30}, "1", "1024"},  // a fraction of a CPU is a whole vCPU
		{PodSize{MilliCPU: 1500, MemoryBytes: 3 << 30}, "2", "3072"}, // rounded up
		{PodSize{MilliCPU: 32000, MemoryBytes: 256 << 30}, "32", "262144"},
		{PodSize{}, "", ""}, // undecided: Kata keeps its defaults
	} {
		spec := &specs.Spec{}
		if err := a.AdjustSpec(spec, tc.size); err != nil {
			t.Fatal(err)
		}
		if v, m := spec.Annotations[KataAnnotationVCPUs], spec.Annotations[KataAnnotationMemory]; v != tc.vcpus || m != tc.mib {
			t.Errorf("%+v: annotations %q vCPUs, %q MiB; want %q, %q", tc.size, v, m, tc.vcpus, tc.mib)
		}
	}
}
