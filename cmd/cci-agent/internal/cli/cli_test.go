package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/gpu"
)

func TestRun(t *testing.T) {
	fixture, err := filepath.Abs("../../../../gpu/testdata/v100-16gb.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfgPath := filepath.Join(dir, "config.toml")
	// The agent reads the same node config as the shim: other sections too.
	cfgText := "backend.kind = \"runc\"\nstate_dir = \"" + filepath.Join(dir, "run") + "\"\n[policy]\nvolume_dir = \"" + filepath.Join(dir, "vol") + "\"\n" +
		"[gpu]\ninventory = \"fake\"\nfake_fixture = \"" + fixture + "\"\nstate_dir = \"" + state + "\"\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	// Pod "pod-a" holds two GPUs.
	inv, err := gpu.NewFake(fixture)
	if err != nil {
		t.Fatal(err)
	}
	devs, _ := inv.Devices()
	if _, err := gpu.NewLedger(gpu.Config{StateDir: state}, nil).Allocate("pod-a", gpu.Request{Count: 2}, devs); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    []string
		wantErrOut string
	}{
		{"help", []string{"gpus", "--help"}, 0, []string{"cci-agent [global flags] gpus", "--nvml", "--fake FILE"}, ""},
		{"no command", nil, 2, nil, ""},
		{"unknown command", []string{"frobnicate"}, 2, nil, `unknown command "frobnicate"`},
		{"table", []string{"--config", cfgPath, "gpus"}, 0,
			[]string{"inventory: fake  driver: 535.104.05  cuda: 12.2  gpus: 8  allocated pods: 1", "PCI BUS ID", "Tesla V100-SXM2-16GB", "16160 MiB", "pod-a"}, ""},
		{"fake flag without config file", []string{"--config", filepath.Join(dir, "none.toml"), "gpus", "--fake", fixture}, 0,
			[]string{"gpus: 8", "0000:15:00.0"}, ""},
		{"missing config is an error", []string{"--config", filepath.Join(dir, "none.toml"), "gpus"}, 1, nil, "none.toml (named explicitly): open"},
		{"nvml never falls back", []string{"--config", cfgPath, "gpus", "--nvml"}, 1, nil, "loading nvml"},
		{"flags exclude each other", []string{"gpus", "--nvml", "--fake", fixture}, 2, nil, "exclude each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "nvml never falls back" {
				if n, err := gpu.NewNVML(""); err == nil {
					n.Close()
					t.Skip("NVML loads on this host")
				}
			}
			var out, errOut bytes.Buffer
			code := Run(tt.args, &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("code = %d, want %d; stderr %s", code, tt.wantCode, errOut.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			if !strings.Contains(errOut.String(), tt.wantErrOut) {
				t.Errorf("stderr = %q, want %q", errOut.String(), tt.wantErrOut)
			}
		})
	}
}

func TestGPUsJSON(t *testing.T) {
	fixture, _ := filepath.Abs("../../../../gpu/testdata/p4.json")
	cfgPath := filepath.Join(t.TempDir(), "c.toml")
	state := t.TempDir()
	if err := os.WriteFile(cfgPath, []byte("backend.kind = \"runc\"\n[gpu]\nstate_dir = \""+state+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, _ := gpu.NewFake(fixture)
	devs, _ := inv.Devices()
	if _, err := gpu.NewLedger(gpu.Config{StateDir: state}, nil).Allocate("pod-b", gpu.Request{IDs: []string{"1"}}, devs); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := Run([]string{"--config", cfgPath, "gpus", "--json", "--fake", fixture}, &out, &errOut); code != 0 {
		t.Fatalf("code %d: %s", code, errOut.String())
	}
	var rep gpuReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Inventory != "fake" || rep.DriverVersion != "418.126.02" || len(rep.GPUs) != 2 ||
		rep.GPUs[0].Pod != "" || rep.GPUs[1].Pod != "pod-b" || len(rep.Allocations) != 1 || rep.GPUs[1].Model != "Tesla P4" {
		t.Fatalf("report = %+v", rep)
	}
}
