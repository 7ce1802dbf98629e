package gpu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Device is one whole GPU as the node sees it.
type Device struct {
	Index         int    `json:"index"`         // NVML index
	Minor         int    `json:"minor"`         // /dev/nvidia<minor>
	UUID          string `json:"uuid"`          // GPU-xxxxxxxx-...
	Model         string `json:"model"`         // NVML name, e.g. "Tesla T4"
	MemoryMiB     uint64 `json:"memoryMiB"`     // total framebuffer memory
	PCIBusID      string `json:"pciBusId"`      // sysfs form, e.g. 0000:3b:00.0
	DriverVersion string `json:"driverVersion"` // e.g. 535.104.05
	CUDAVersion   string `json:"cudaVersion"`   // e.g. 12.2
}

// Inventory lists the node's GPUs. Implementations: NVML ([NewNVML]), a JSON
// fixture ([NewFake]) and none ([NewNone]); [Open] picks one from Config.
type Inventory interface {
	// Devices returns every GPU, ordered by index.
	Devices() ([]Device, error)
	// DriverVersion is the host driver version ("" on a node without GPUs).
	DriverVersion() (string, error)
	// CUDAVersion is the CUDA version the host driver supports, e.g. "12.2".
	CUDAVersion() (string, error)
	// Close releases the backing library, if any.
	Close() error
}

// Open returns the inventory Config.Inventory names. A failing source is an
// error, never a fallback to another source.
func Open(cfg Config) (Inventory, error) {
	cfg = cfg.WithDefaults()
	switch cfg.Inventory {
	case SourceNVML:
		return NewNVML(cfg.NVMLLibrary)
	case SourceFake:
		if cfg.FakeFixture == "" {
			return nil, errors.New("opening gpu inventory: inventory = \"fake\" needs fake_fixture")
		}
		return NewFake(cfg.FakeFixture)
	case SourceNone:
		return NewNone(), nil
	default:
		return nil, fmt.Errorf("opening gpu inventory: inventory %q: allowed: %s, %s, %s", cfg.Inventory, SourceNVML, SourceFake, SourceNone)
	}
}

// fixture is the JSON form NewFake reads; see testdata/*.json.
type fixture struct {
	DriverVersion string   `json:"driverVersion"`
	CUDAVersion   string   `json:"cudaVersion"`
	Devices       []Device `json:"devices"`
}

// Fake is a whole-machine inventory read from a JSON fixture.
type Fake struct {
	fx fixture
}

var _ Inventory = (*Fake)(nil)

// NewFake reads a fixture: {"driverVersion", "cudaVersion", "devices": [{"index",
// "minor", "uuid", "model", "memoryMiB", "pciBusId"}]}. Per-device driver and CUDA
// versions default to the top-level ones.
func NewFake(path string) (*Fake, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading gpu fixture: %w", err)
	}
	var fx fixture
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fx); err != nil {
		return nil, fmt.Errorf("parsing gpu fixture %s: %w", path, err)
	}
	seen := map[string]bool{}
	for i := range fx.Devices {
		d := &fx.Devices[i]
		if d.DriverVersion == "" {
			d.DriverVersion = fx.DriverVersion
		}
		if d.CUDAVersion == "" {
			d.CUDAVersion = fx.CUDAVersion
		}
		d.PCIBusID = NormalizeBusID(d.PCIBusID)
		if d.UUID == "" || d.Model == "" || d.PCIBusID == "" {
			return nil, fmt.Errorf("parsing gpu fixture %s: device %d needs uuid, model and pciBusId", path, i)
		}
		for _, k := range []string{"index " + fmt.Sprint(d.Index), "minor " + fmt.Sprint(d.Minor), "uuid " + d.UUID, "bus " + d.PCIBusID} {
			if seen[k] {
				return nil, fmt.Errorf("parsing gpu fixture %s: duplicate %s", path, k)
			}
			seen[k] = true
		}
	}
	return &Fake{fx: fx}, nil
}

// Devices implements Inventory.
func (f *Fake) Devices() ([]Device, error) {
	return append([]Device(nil), f.fx.Devices...), nil
}

// DriverVersion implements Inventory.
func (f *Fake) DriverVersion() (string, error) { return f.fx.DriverVersion, nil }

// CUDAVersion implements Inventory.
func (f *Fake) CUDAVersion() (string, error) { return f.fx.CUDAVersion, nil }

// Close implements Inventory.
func (f *Fake) Close() error { return nil }

// None is the inventory of a node without GPUs.
type None struct{}

var _ Inventory = None{}

// NewNone returns the empty inventory.
func NewNone() None { return None{} }

// Devices implements Inventory.
func (None) Devices() ([]Device, error) { return nil, nil }

// DriverVersion implements Inventory.
func (None) DriverVersion() (string, error) { return "", nil }

// CUDAVersion implements Inventory.
func (None) CUDAVersion() (string, error) { return "", nil }

// Close implements Inventory.
func (None) Close() error { return nil }

// NormalizeBusID turns NVML's "00000000:3B:00.0" into sysfs's "0000:3b:00.0".
func NormalizeBusID(id string) string {
	id = strings.ToLower(strings.TrimSpace(id))
	dom, rest, ok := strings.Cut(id, ":")
	if !ok || strings.Count(rest, ":") != 1 {
		return id
	}
	if len(dom) > 4 {
		dom = dom[len(dom)-4:]
	}
	for len(dom) < 4 {
		dom = "0" + dom
	}
	return dom + ":" + rest
}
