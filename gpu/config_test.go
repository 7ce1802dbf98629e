package gpu

import (
	"errors"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestConfigTOML(t *testing.T) {
	const doc = `
[gpu]
inventory = "fake"
fake_fixture = "/etc/cci-shim/t4.json"
state_dir = "/run/gpu"
default_driver = "470.82.01"
[gpu.drivers."470.82.01"]
lib_dir = "/opt/nvidia/470/lib64"
bin_dir = "/opt/nvidia/470/bin"
[gpu.drivers."418.126"]
lib_dir = "/opt/nvidia/418/lib64"
bin_dir = "/opt/nvidia/418/bin"
`
	var file struct {
		GPU Config `toml:"gpu"`
	}
	if err := toml.Unmarshal([]byte(doc), &file); err != nil {
		t.Fatal(err)
	}
	c := file.GPU
	if c.Inventory != "fake" || c.Drivers["418.126"].LibDir != "/opt/nvidia/418/lib64" || c.LedgerPath() != "/run/gpu/gpu-ledger.json" {
		t.Fatalf("config = %+v", c)
	}
	if got := strings.Join(c.OfferedDrivers(nil), ","); got != "418.126,470.82.01" {
		t.Errorf("OfferedDrivers = %s", got)
	}
	tests := []struct {
		requested, host, want, wantErr string
	}{
		{"418.126", "", "418.126", ""},
		{"", "535.1", "470.82.01", ""}, // default_driver before the host's
		{"535.104.05", "", "", `gpu.cci.io/driver-version "535.104.05" is not available on this node; allowed: 418.126, 470.82.01`},
	}
	for _, tt := range tests {
		d, err := c.Driver(tt.requested, tt.host)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrUnavailable) {
				t.Errorf("Driver(%q) err = %v, want %q", tt.requested, err, tt.wantErr)
			}
			continue
		}
		if err != nil || d.Version != tt.want || d.LibDir == "" {
			t.Errorf("Driver(%q) = %+v, %v", tt.requested, d, err)
		}
	}
	if _, err := (Config{}).Driver("", "535.1"); err == nil || !strings.Contains(err.Error(), "no [gpu.drivers") {
		t.Errorf("unconfigured host driver: %v", err)
	}
}
