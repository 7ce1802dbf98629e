package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/cci-shim/cci-shim/gpu"
)

// gpuReport is `cci-agent gpus --json`.
type gpuReport struct {
	Inventory     string           `json:"inventory"`
	DriverVersion string           `json:"driverVersion"`
	CUDAVersion   string           `json:"cudaVersion"`
	GPUs          []gpuRow         `json:"gpus"`
	Allocations   []gpu.Allocation `json:"allocations"`
	Ledger        string           `json:"ledger"`
}

type gpuRow struct {
	gpu.Device
	Pod string `json:"pod,omitempty"`
}

const gpusHelp = `Usage: cci-agent [global flags] gpus [--json] [--nvml | --fake FILE]

Prints the node's GPU inventory and which pod holds each GPU (the ledger in
gpu.state_dir). The inventory is never chosen silently: a configured NVML that
does not load is an error, not a fallback to the fake.

Flags:
  --json        machine-readable output
  --nvml        read the real driver through NVML (libnvidia-ml.so.1), whatever
                [gpu] inventory says
  --fake FILE   read a JSON fixture instead (development hosts)
With --nvml or --fake a missing node config file is not needed: the [gpu]
defaults apply.
` + globalHelp

func runGPUs(args []string, g globals, stdout, stderr io.Writer, log *slog.Logger) int {
	cmd := newCommand("gpus", gpusHelp, stdout, stderr)
	asJSON := cmd.Bool("json", false, "")
	useNVML := cmd.Bool("nvml", false, "")
	fake := cmd.String("fake", "", "")
	if code, ok := cmd.parse(args); !ok {
		return code
	}
	if *useNVML && *fake != "" {
		fmt.Fprintln(stderr, "cci-agent gpus: --nvml and --fake exclude each other")
		return 2
	}
	overridden := *useNVML || *fake != ""
	nc, _, err := loadConfig(g.configPath)
	if err != nil && overridden && isNotExist(err) {
		nc, err = defaultConfig(), nil
	}
	if err != nil {
		fmt.Fprintf(stderr, "cci-agent gpus: %v\n", err)
		return 1
	}
	cfg := nc.GPU
	switch {
	case *useNVML:
		cfg.Inventory = gpu.SourceNVML
	case *fake != "":
		cfg.Inventory, cfg.FakeFixture = gpu.SourceFake, *fake
	}
	rep, err := collect(cfg.WithDefaults(), log)
	if err != nil {
		fmt.Fprintf(stderr, "cci-agent gpus: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "cci-agent gpus: %v\n", err)
			return 1
		}
		return 0
	}
	writeTable(stdout, rep)
	return 0
}

// collect reads the inventory and the ledger.
func collect(cfg gpu.Config, log *slog.Logger) (*gpuReport, error) {
	inv, err := gpu.Open(cfg)
	if err != nil {
		return nil, err
	}
	defer inv.Close()
	devs, err := inv.Devices()
	if err != nil {
		return nil, fmt.Errorf("listing gpus: %w", err)
	}
	rep := &gpuReport{Inventory: cfg.Inventory, GPUs: []gpuRow{}}
	if rep.DriverVersion, err = inv.DriverVersion(); err != nil {
		return nil, err
	}
	if rep.CUDAVersion, err = inv.CUDAVersion(); err != nil {
		return nil, err
	}
	ledger := gpu.NewLedger(cfg, log)
	rep.Ledger = ledger.Path()
	if rep.Allocations, err = ledger.List(); err != nil {
		return nil, err
	}
	if rep.Allocations == nil {
		rep.Allocations = []gpu.Allocation{}
	}
	owner := map[string]string{}
	for _, a := range rep.Allocations {
		for _, d := range a.Devices {
			owner[d.UUID] = a.PodID
		}
	}
	for _, d := range devs {
		rep.GPUs = append(rep.GPUs, gpuRow{Device: d, Pod: owner[d.UUID]})
		delete(owner, d.UUID)
	}
	for uuid, pod := range owner {
		log.Warn("ledger holds a gpu the inventory does not list", "gpu", uuid, "pod", pod)
	}
	return rep, nil
}

func writeTable(w io.Writer, rep *gpuReport) {
	fmt.Fprintf(w, "inventory: %s  driver: %s  cuda: %s  gpus: %d  allocated pods: %d\n",
		rep.Inventory, dash(rep.DriverVersion), dash(rep.CUDAVersion), len(rep.GPUs), len(rep.Allocations))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tUUID\tMODEL\tMEMORY\tPCI BUS ID\tDRIVER\tCUDA\tPOD")
	for _, g := range rep.GPUs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d MiB\t%s\t%s\t%s\t%s\n",
			g.Index, g.UUID, g.Model, g.MemoryMiB, g.PCIBusID, g.DriverVersion, g.CUDAVersion, dash(g.Pod))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
