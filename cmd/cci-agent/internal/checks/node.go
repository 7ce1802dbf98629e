package checks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/gpu"
)

func (r Runner) kvm() Result {
	res := Result{Name: "kvm"}
	v, err := r.Host.KVM(r.path("/dev/kvm"))
	switch {
	case err != nil:
		res.Status, res.Detail = needed(r.kata()), fmt.Sprintf("/dev/kvm: %v", err)
		res.Fix = "enable virtualisation in the firmware (or nested virtualisation on a VM), load kvm_intel or kvm_amd, and give root read-write access to /dev/kvm"
	case v != kvmAPIVersion:
		res.Status, res.Detail = needed(r.kata()), fmt.Sprintf("/dev/kvm speaks KVM API %d, hypervisors need %d", v, kvmAPIVersion)
	default:
		res.Status, res.Detail = OK, fmt.Sprintf("/dev/kvm: KVM API %d, a VM was created", v)
	}
	if !r.kata() {
		res.Status, res.Fix = Skip, ""
		res.Detail = "not needed by the " + r.Cfg.Backend.Kind + " backend (" + res.Detail + ")"
	}
	return res
}

func (r Runner) vhostVsock() Result {
	res := Result{Name: "vhost-vsock"}
	if err := r.Host.OpenDevice(r.path("/dev/vhost-vsock")); err != nil {
		res.Status, res.Detail = needed(r.kata()), fmt.Sprintf("/dev/vhost-vsock: %v", err)
		res.Fix = "modprobe vhost_vsock (Kata talks to its guest agent over vsock)"
	} else {
		res.Status, res.Detail = OK, "/dev/vhost-vsock opens"
	}
	if !r.kata() {
		res.Status, res.Fix = Skip, ""
		res.Detail = "not needed by the " + r.Cfg.Backend.Kind + " backend (" + res.Detail + ")"
	}
	return res
}

func (r Runner) cpuVirt() Result {
	res := Result{Name: "cpu-virt"}
	if !r.kata() {
		return Result{Name: "cpu-virt", Status: Skip, Detail: "not needed by the " + r.Cfg.Backend.Kind + " backend"}
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "386" {
		return Result{Name: "cpu-virt", Status: OK, Detail: runtime.GOARCH + ": no CPU flag to read; the kvm check is the test"}
	}
	data, err := r.readFile("/proc/cpuinfo")
	if err != nil {
		return Result{Name: "cpu-virt", Status: Fail, Detail: err.Error()}
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, flags, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "flags" {
			continue
		}
		for _, f := range strings.Fields(flags) {
			if f == "vmx" || f == "svm" {
				res.Status, res.Detail = OK, "CPU flag "+f
				return res
			}
		}
		break
	}
	res.Status = Warn
	res.Detail = "no vmx or svm flag in /proc/cpuinfo (a hypervisor that hides it from this VM?); KVM may still work: see the kvm check"
	res.Fix = "enable VT-x/AMD-V in the firmware, or nested virtualisation with the flag exposed"
	return res
}

func (r Runner) backendBinary() Result {
	res := Result{Name: "backend"}
	b := r.Cfg.Backend
	path, err := r.Host.LookPath(b.Binary)
	if err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("backend.kind = %q needs %q: %v", b.Kind, b.Binary, err)
		res.Fix = "install it in containerd's PATH or set backend.binary to its absolute path in " + r.Source.Path
		return res
	}
	res.Status, res.Detail = OK, fmt.Sprintf("%s backend: %s", b.Kind, path)
	if b.Kind == config.BackendRunc {
		res.Status = Warn
		res.Detail += " (development only: containers share the host kernel)"
		res.Fix = `production nodes set backend.kind = "kata"`
	}
	return res
}

// ociRuntime checks the OCI runtime the backend shim runs.
func (r Runner) ociRuntime(name string) Result {
	path, err := r.Host.LookPath(name)
	if err != nil {
		return Result{Name: name, Status: Fail, Detail: fmt.Sprintf("%s: %v", name, err), Fix: "install " + name + " in containerd's PATH"}
	}
	out, _ := r.Host.Output(path, "--version")
	first, _, _ := strings.Cut(out, "\n")
	return Result{Name: name, Status: OK, Detail: strings.TrimSpace(path + " " + first)}
}

func (r Runner) cgroups() Result {
	if data, err := r.readFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		if !strings.Contains(" "+string(data)+" ", " io ") && !strings.Contains(string(data), "io\n") {
			return Result{Name: "cgroups", Status: Fail, Detail: "cgroup v2 without the io controller: the rootfs throttle (R8) cannot apply",
				Fix: "enable the io controller (cgroup.subtree_control)"}
		}
		return Result{Name: "cgroups", Status: OK, Detail: "cgroup v2 with io.max"}
	}
	if _, err := os.Stat(r.path("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device")); err != nil {
		return Result{Name: "cgroups", Status: Fail, Detail: "cgroup v1 without blkio throttling: the rootfs throttle (R8) cannot apply",
			Fix: "mount the blkio controller, or boot with cgroup v2"}
	}
	return Result{Name: "cgroups", Status: Warn, Detail: "cgroup v1 blkio: throttles direct I/O, not buffered writeback (v2 io.max does)",
		Fix: "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) for R8 on buffered writes"}
}

func (r Runner) gpus() Result {
	inv, err := gpu.Open(r.Cfg.GPU)
	if err != nil {
		return Result{Name: "gpus", Status: Fail, Detail: err.Error(), Fix: "fix [gpu] in " + r.Source.Path}
	}
	defer inv.Close()
	devs, err := inv.Devices()
	if err != nil {
		return Result{Name: "gpus", Status: Fail, Detail: err.Error()}
	}
	if r.Cfg.GPU.Inventory == gpu.SourceNone {
		return Result{Name: "gpus", Status: Skip, Detail: `gpu.inventory = "none": no GPUs offered`}
	}
	return Result{Name: "gpus", Status: OK, Detail: fmt.Sprintf("%d GPUs (inventory %q)", len(devs), r.Cfg.GPU.Inventory)}
}

// stateDirs checks, without writing anything, that the directories the
// shims and the agent write to can be written: each one, or the nearest
// existing parent it will be created in.
func (r Runner) stateDirs() Result {
	dirs := []struct{ key, dir string }{
		{"state_dir", r.Cfg.StateDir},
		{"policy.volume_dir", r.Cfg.Policy.VolumeDir},
		{"logs.file_dir", r.Cfg.Logs.FileDir},
	}
	if r.Cfg.GPU.Inventory != gpu.SourceNone {
		dirs = append(dirs, struct{ key, dir string }{"gpu.state_dir", r.Cfg.GPU.StateDir})
	}
	var ok []string
	for _, d := range dirs {
		if err := r.writableDir(d.dir); err != nil {
			return Result{Name: "state-dirs", Status: Fail, Detail: fmt.Sprintf("%s %s: %v", d.key, d.dir, err),
				Fix: fmt.Sprintf("make it a directory root can write (not on a read-only mount), or set %s in %s", d.key, r.Source.Path)}
		}
		ok = append(ok, d.dir)
	}
	return Result{Name: "state-dirs", Status: OK, Detail: "writable: " + strings.Join(ok, ", ")}
}

func (r Runner) writableDir(dir string) error {
	p := r.path(dir)
	for {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			parent := filepath.Dir(p)
			if parent == p {
				return err
			}
			p = parent
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", strings.TrimPrefix(p, strings.TrimSuffix(r.Root, "/")))
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			return fmt.Errorf("%s: not writable: %w", strings.TrimPrefix(p, strings.TrimSuffix(r.Root, "/")), err)
		}
		return nil
	}
}
