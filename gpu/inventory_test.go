package gpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

func TestFakeFixtures(t *testing.T) {
	tests := []struct {
		file      string
		count     int
		model     string
		memMiB    uint64
		driver    string
		cuda      string
		firstBus  string
		wantModel string // a request that must match
	}{
		{"t4.json", 4, "Tesla T4", 15360, "470.82.01", "11.4", "0000:00:1b.0", "T4"},
		{"p4.json", 2, "Tesla P4", 7611, "418.126.02", "10.1", "0000:00:07.0", "P4"},
		{"v100-16gb.json", 8, "Tesla V100-SXM2-16GB", 16160, "535.104.05", "12.2", "0000:15:00.0", "V100 16GB"},
		{"v100-32gb.json", 8, "Tesla V100-SXM2-32GB", 32510, "450.80.02", "11.0", "0000:15:00.0", "v100-32gb"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			inv, err := Open(Config{Inventory: SourceFake, FakeFixture: filepath.Join("testdata", tt.file)})
			if err != nil {
				t.Fatal(err)
			}
			defer inv.Close()
			devs, err := inv.Devices()
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != tt.count {
				t.Fatalf("got %d devices, want %d", len(devs), tt.count)
			}
			d := devs[0]
			if d.Model != tt.model || d.MemoryMiB != tt.memMiB || d.DriverVersion != tt.driver || d.CUDAVersion != tt.cuda || d.PCIBusID != tt.firstBus {
				t.Errorf("device 0 = %+v", d)
			}
			if !ModelMatches(tt.wantModel, d.Model) {
				t.Errorf("model %q does not match %q", tt.wantModel, d.Model)
			}
			if v, _ := inv.DriverVersion(); v != tt.driver {
				t.Errorf("DriverVersion = %q", v)
			}
			if v, _ := inv.CUDAVersion(); v != tt.cuda {
				t.Errorf("CUDAVersion = %q", v)
			}
		})
	}
}

func TestOpenChoosesByConfig(t *testing.T) {
	dir := t.TempDir()
	dup := filepath.Join(dir, "dup.json")
	if err := os.WriteFile(dup, []byte(`{"driverVersion":"1.2","devices":[
		{"index":0,"minor":0,"uuid":"GPU-a","model":"m","pciBusId":"0000:01:00.0"},
		{"index":1,"minor":1,"uuid":"GPU-a","model":"m","pciBusId":"0000:02:00.0"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
		devices int
	}{
		{"empty means none", Config{}, false, 0},
		{"none", Config{Inventory: "none"}, false, 0},
		{"fake needs fixture", Config{Inventory: "fake"}, true, 0},
		{"fake missing file", Config{Inventory: "fake", FakeFixture: filepath.Join(dir, "nope.json")}, true, 0},
		{"fake duplicate uuid", Config{Inventory: "fake", FakeFixture: dup}, true, 0},
		{"unknown source", Config{Inventory: "magic"}, true, 0},
		// A missing library is an error, never a silent fake.
		{"nvml without library", Config{Inventory: "nvml", NVMLLibrary: filepath.Join(dir, "libnvidia-ml.so.1")}, true, 0},
		{"fake t4", Config{Inventory: "fake", FakeFixture: "testdata/t4.json"}, false, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Open(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Open err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			devs, err := inv.Devices()
			if err != nil || len(devs) != tt.devices {
				t.Fatalf("Devices = %d, %v; want %d", len(devs), err, tt.devices)
			}
		})
	}
}

func TestNormalizeBusID(t *testing.T) {
	tests := map[string]string{
		"00000000:3B:00.0": "0000:3b:00.0",
		"0000:3b:00.0":     "0000:3b:00.0",
		"3b:00.0":          "3b:00.0",
		"1:02:00.0":        "0001:02:00.0",
	}
	for in, want := range tests {
		if got := NormalizeBusID(in); got != want {
			t.Errorf("NormalizeBusID(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNVMLAdapter runs the NVML implementation against go-nvml's DGX A100 mock.
func TestNVMLAdapter(t *testing.T) {
	srv := dgxa100.New()
	for _, h := range srv.Devices {
		d := h.(*dgxa100.Device)
		bus := fmt.Sprintf("00000000:%02X:00.0", 0x10+d.Minor) // NVML's own form
		d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) {
			var p nvml.PciInfo
			for i := range bus {
				p.BusId[i] = int8(bus[i])
			}
			return p, nvml.SUCCESS
		}
	}
	n, err := newNVML(srv)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := n.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 {
		t.Fatalf("got %d devices, want 8", len(devs))
	}
	seen := map[string]bool{}
	for i, d := range devs {
		if d.Index != i || d.UUID == "" || seen[d.UUID] || d.MemoryMiB == 0 || d.PCIBusID == "" {
			t.Errorf("device %d = %+v", i, d)
		}
		seen[d.UUID] = true
		if want := fmt.Sprintf("0000:%02x:00.0", 0x10+i); d.PCIBusID != want {
			t.Errorf("bus id %q, want %q", d.PCIBusID, want)
		}
		if !ModelMatches("A100", d.Model) {
			t.Errorf("model %q", d.Model)
		}
		if d.DriverVersion != "550.54.15" || d.CUDAVersion != "12.4" {
			t.Errorf("versions %q %q", d.DriverVersion, d.CUDAVersion)
		}
	}
	if err := n.Close(); err != nil {
		t.Error(err)
	}
}

func TestNVMLEmptyBusID(t *testing.T) {
	n, err := newNVML(dgxa100.New()) // the mock reports no bus id
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Devices(); err == nil {
		t.Fatal("Devices succeeded without a PCI bus id")
	}
}

func TestNVMLInitFailure(t *testing.T) {
	srv := dgxa100.New()
	srv.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }
	_, err := newNVML(srv)
	if err == nil || !errors.Is(err, errNVML) {
		t.Fatalf("err = %v, want an nvml error", err)
	}
}
