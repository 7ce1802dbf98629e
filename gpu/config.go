package gpu

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Inventory sources accepted in Config.Inventory.
const (
	SourceNVML = "nvml" // the real driver through libnvidia-ml.so.1
	SourceFake = "fake" // a JSON fixture (Config.FakeFixture); development and CI only
	SourceNone = "none" // a node without GPUs; also what an empty value means
)

// Defaults applied by Config.withDefaults.
const (
	DefaultNVMLLibrary = "libnvidia-ml.so.1"
	DefaultStateDir    = "/var/lib/cci-shim/gpu"
	DefaultRoot        = "/"
)

// Config is the node configuration's [gpu] section. It is a plain struct so the node
// config can embed it as-is.
type Config struct {
	// Inventory selects the GPU source: "nvml", "fake" or "none" (default "none").
	Inventory string `toml:"inventory" json:"inventory"`
	// NVMLLibrary is the library dlopen'ed for "nvml" (default libnvidia-ml.so.1).
	NVMLLibrary string `toml:"nvml_library" json:"nvmlLibrary"`
	// FakeFixture is the JSON fixture read for "fake".
	FakeFixture string `toml:"fake_fixture" json:"fakeFixture"`
	// StateDir holds the allocation ledger (default /var/lib/cci-shim/gpu).
	StateDir string `toml:"state_dir" json:"stateDir"`
	// Root is the host root under which sys/ and proc/ are read (default "/").
	Root string `toml:"root" json:"root"`
	// DefaultDriver is the driver version a pod gets when it names none; when empty
	// the inventory's (host) driver version is used.
	DefaultDriver string `toml:"default_driver" json:"defaultDriver"`
	// Drivers maps a driver version to its user-space directories, e.g.
	// [gpu.drivers."535.104.05"] lib_dir = "...", bin_dir = "...".
	// When non-empty it is also the set of versions pods may ask for.
	Drivers map[string]DriverDirs `toml:"drivers" json:"drivers"`
}

// DriverDirs are the host directories of one driver version's user-space files.
type DriverDirs struct {
	LibDir string `toml:"lib_dir" json:"libDir"` // mounted at /usr/local/nvidia/lib64
	BinDir string `toml:"bin_dir" json:"binDir"` // mounted at /usr/local/nvidia/bin
}

// Driver is a resolved driver version with its directories.
type Driver struct {
	Version string
	DriverDirs
}

// WithDefaults returns c with empty fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Inventory == "" {
		c.Inventory = SourceNone
	}
	if c.NVMLLibrary == "" {
		c.NVMLLibrary = DefaultNVMLLibrary
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	return c
}

// LedgerPath is the allocation ledger's file.
func (c Config) LedgerPath() string {
	return filepath.Join(c.WithDefaults().StateDir, "gpu-ledger.json")
}

// OfferedDrivers lists the driver versions pods may ask for: the [gpu.drivers] table
// when it is set, else the inventory's driver version(s) found on devices.
func (c Config) OfferedDrivers(devices []Device) []string {
	set := map[string]bool{}
	if len(c.Drivers) > 0 {
		for v := range c.Drivers {
			set[v] = true
		}
	} else {
		for _, d := range devices {
			if d.DriverVersion != "" {
				set[d.DriverVersion] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Driver resolves the driver a pod gets: the requested version, else
// DefaultDriver, else hostVersion (the inventory's). The version must have a
// [gpu.drivers] entry, because its libraries are what the pod sees (R12).
func (c Config) Driver(requested, hostVersion string) (Driver, error) {
	v := requested
	if v == "" {
		v = c.DefaultDriver
	}
	if v == "" {
		v = hostVersion
	}
	if v == "" {
		return Driver{}, fmt.Errorf("resolving gpu driver: no version requested, no default_driver and no host driver version")
	}
	dirs, ok := c.Drivers[v]
	if !ok {
		have := make([]string, 0, len(c.Drivers))
		for k := range c.Drivers {
			have = append(have, k)
		}
		sort.Strings(have)
		if requested != "" {
			return Driver{}, &RequestError{Field: AnnotationDriverVersion, Value: requested,
				Reason: "is not available on this node", Allowed: orNone(have), Unavailable: true}
		}
		return Driver{}, fmt.Errorf("resolving gpu driver %q: no [gpu.drivers.%q] entry with lib_dir and bin_dir (configured: %s)", v, v, orNone(have))
	}
	if dirs.LibDir == "" || dirs.BinDir == "" {
		return Driver{}, fmt.Errorf("resolving gpu driver %q: [gpu.drivers.%q] needs both lib_dir and bin_dir", v, v)
	}
	return Driver{Version: v, DriverDirs: dirs}, nil
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
