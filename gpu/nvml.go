package gpu

import (
	"errors"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVML is the inventory read from the NVIDIA driver through go-nvml.
type NVML struct {
	lib nvml.Interface
}

var _ Inventory = (*NVML)(nil)

// NewNVML loads libPath (e.g. libnvidia-ml.so.1) with dlopen and initialises NVML.
// It fails, naming the library, where no driver is installed.
func NewNVML(libPath string) (*NVML, error) {
	if libPath == "" {
		libPath = DefaultNVMLLibrary
	}
	n, err := newNVML(nvml.New(nvml.WithLibraryPath(libPath)))
	if err != nil {
		return nil, fmt.Errorf("loading nvml from %s: %w", libPath, err)
	}
	return n, nil
}

// newNVML initialises lib; tests pass go-nvml's mock servers.
func newNVML(lib nvml.Interface) (*NVML, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml init: %w", nvmlErr(ret))
	}
	return &NVML{lib: lib}, nil
}

// Close shuts NVML down.
func (n *NVML) Close() error {
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("nvml shutdown: %w", nvmlErr(ret))
	}
	return nil
}

// DriverVersion implements Inventory.
func (n *NVML) DriverVersion() (string, error) {
	v, ret := n.lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return "", fmt.Errorf("nvml driver version: %w", nvmlErr(ret))
	}
	return v, nil
}

// CUDAVersion implements Inventory; NVML reports 12020 for CUDA 12.2.
func (n *NVML) CUDAVersion() (string, error) {
	v, ret := n.lib.SystemGetCudaDriverVersion()
	if ret != nvml.SUCCESS {
		return "", fmt.Errorf("nvml cuda version: %w", nvmlErr(ret))
	}
	return fmt.Sprintf("%d.%d", v/1000, (v%1000)/10), nil
}

// Devices implements Inventory.
func (n *NVML) Devices() ([]Device, error) {
	driver, err := n.DriverVersion()
	if err != nil {
		return nil, err
	}
	cuda, err := n.CUDAVersion()
	if err != nil {
		return nil, err
	}
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml device count: %w", nvmlErr(ret))
	}
	out := make([]Device, 0, count)
	for i := 0; i < count; i++ {
		d, err := n.device(i)
		if err != nil {
			return nil, fmt.Errorf("nvml device %d: %w", i, err)
		}
		d.DriverVersion, d.CUDAVersion = driver, cuda
		out = append(out, d)
	}
	return out, nil
}

func (n *NVML) device(i int) (Device, error) {
	h, ret := n.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("handle: %w", nvmlErr(ret))
	}
	d := Device{Index: i}
	if d.UUID, ret = h.GetUUID(); ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("uuid: %w", nvmlErr(ret))
	}
	if d.Model, ret = h.GetName(); ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("name: %w", nvmlErr(ret))
	}
	if d.Minor, ret = h.GetMinorNumber(); ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("minor number: %w", nvmlErr(ret))
	}
	mem, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("memory: %w", nvmlErr(ret))
	}
	d.MemoryMiB = mem.Total / (1 << 20)
	pci, ret := h.GetPciInfo()
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("pci info: %w", nvmlErr(ret))
	}
	bus := cString(pci.BusId[:])
	if bus == "" {
		bus = cString(pci.BusIdLegacy[:])
	}
	if bus == "" {
		return Device{}, errors.New("pci info: empty bus id")
	}
	d.PCIBusID = NormalizeBusID(bus)
	return d, nil
}

func cString(b []int8) string {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}

// errNVML marks errors coming from the NVML library.
var errNVML = errors.New("nvml")

func nvmlErr(ret nvml.Return) error {
	return fmt.Errorf("%w: %s", errNVML, ret.Error())
}
