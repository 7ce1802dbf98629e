// Package checks holds the node checks of cci-agent (R21): is this host able
// to run cci pods? Each check reads the host under Root (a fixture tree in
// tests) and reports OK, WARN (works, but not as production needs) or FAIL.
// It changes nothing on the node but creating the state dir if it is missing.
package checks

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/cgroups/v3"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// Status of a check.
type Status string

const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is one check's outcome.
type Result struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
}

// Runner runs the checks against the host under Root.
type Runner struct {
	Root string // "/" on a node
	Cfg  config.Config
}

// Run runs every check.
func (r Runner) Run() []Result {
	kata := r.Cfg.Backend.Kind == config.BackendKata
	return []Result{r.kvm(kata), r.backend(), r.kataConfig(kata), r.thinPool(kata), r.cgroups(), r.gpus(), r.stateDir()}
}

// Failed reports whether any result is a failure.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

func (r Runner) path(p string) string { return filepath.Join(r.Root, p) }

// severe is Fail when production (Kata) needs the thing, else Warn.
func severe(kata bool) Status {
	if kata {
		return Fail
	}
	return Warn
}

func (r Runner) kvm(kata bool) Result {
	f, err := os.OpenFile(r.path("/dev/kvm"), os.O_RDWR, 0)
	if err != nil {
		return Result{"kvm", severe(kata), fmt.Sprintf("/dev/kvm: %v (Kata micro-VMs need KVM)", err)}
	}
	f.Close()
	return Result{"kvm", OK, "/dev/kvm is usable"}
}

func (r Runner) backend() Result {
	a, err := backend.New(r.Cfg)
	if err != nil {
		return Result{"backend", Fail, err.Error()}
	}
	detail := fmt.Sprintf("%s backend: %s", a.Kind(), a.Binary())
	if a.Kind() == config.BackendRunc {
		return Result{"backend", Warn, detail + " (development only: containers share the host kernel)"}
	}
	return Result{"backend", OK, detail}
}

func (r Runner) kataConfig(kata bool) Result {
	if !kata {
		return Result{"kata-config", OK, "not used by the runc backend"}
	}
	path := r.Cfg.Backend.ConfigPath
	if path == "" {
		return Result{"kata-config", Warn, "backend.config_path is empty: Kata uses its default configuration"}
	}
	data, err := os.ReadFile(r.path(path))
	if err != nil {
		return Result{"kata-config", Fail, err.Error()}
	}
	for _, key := range []string{"default_vcpus", "default_memory"} {
		if !strings.Contains(string(data), key) || !strings.Contains(string(data), "enable_annotations") {
			return Result{"kata-config", Fail, fmt.Sprintf("%s: enable_annotations must allow %s, or Kata refuses every sized pod", path, key)}
		}
	}
	return Result{"kata-config", OK, path}
}

func (r Runner) thinPool(kata bool) Result {
	if _, err := os.Stat(r.path("/dev/mapper/control")); err != nil {
		return Result{"thin-pool", severe(kata), "no device-mapper: the devmapper snapshotter (R7) cannot run; development hosts use blockfile"}
	}
	return Result{"thin-pool", OK, "device-mapper available"}
}

func (r Runner) cgroups() Result {
	if r.Root == "/" && cgroups.Mode() == cgroups.Unified {
		data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if err != nil || !strings.Contains(string(data), "io") {
			return Result{"cgroups", Fail, "cgroup v2 without the io controller: the rootfs throttle (R8) cannot apply"}
		}
		return Result{"cgroups", OK, "cgroup v2 with io.max"}
	}
	if _, err := os.Stat(r.path("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device")); err != nil {
		return Result{"cgroups", Fail, "cgroup v1 without blkio throttling: the rootfs throttle (R8) cannot apply"}
	}
	return Result{"cgroups", Warn, "cgroup v1 blkio: throttles direct I/O, not buffered writeback (v2 io.max does)"}
}

func (r Runner) gpus() Result {
	inv, err := gpu.Open(r.Cfg.GPU)
	if err != nil {
		return Result{"gpus", Fail, err.Error()}
	}
	defer inv.Close()
	devs, err := inv.Devices()
	if err != nil {
		return Result{"gpus", Fail, err.Error()}
	}
	return Result{"gpus", OK, fmt.Sprintf("%d GPUs (inventory %q)", len(devs), r.Cfg.GPU.Inventory)}
}

func (r Runner) stateDir() Result {
	dir := r.Cfg.StateDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{"state-dir", Fail, err.Error()}
	}
	probe := filepath.Join(dir, ".probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return Result{"state-dir", Fail, fmt.Sprintf("%s is not writable: %v", dir, err)}
	}
	os.Remove(probe)
	return Result{"state-dir", OK, dir}
}
