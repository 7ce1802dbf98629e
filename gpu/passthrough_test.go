package gpu

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeHost builds <root>/sys and <root>/proc for devs: GPU i sits in IOMMU group
// 40+i, bound to vfio-pci (sys/class/vfio/<group>/dev = 240:<i>) unless unbound.
func fakeHost(t *testing.T, devs []Device, unbound map[int]bool, procDevices string) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p string) string {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for i, d := range devs {
		g := 40 + i
		mk(filepath.Join("sys/kernel/iommu_groups", itoa(g)))
		dev := mk(filepath.Join("sys/devices/pci0000:00", d.PCIBusID))
		if err := os.Symlink(filepath.Join("../../../kernel/iommu_groups", itoa(g)), filepath.Join(dev, "iommu_group")); err != nil {
			t.Fatal(err)
		}
		mk("sys/bus/pci/devices")
		if err := os.Symlink(filepath.Join("../../../devices/pci0000:00", d.PCIBusID), filepath.Join(root, "sys/bus/pci/devices", d.PCIBusID)); err != nil {
			t.Fatal(err)
		}
		if !unbound[i] {
			c := mk(filepath.Join("sys/class/vfio", itoa(g)))
			if err := os.WriteFile(filepath.Join(c, "dev"), []byte("240:"+itoa(i)+"\n"), 0o444); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(mk("proc"), "devices"), []byte(procDevices), 0o444); err != nil {
		t.Fatal(err)
	}
	return root
}

func itoa(i int) string { return strconv.Itoa(i) }

const procDevicesNVIDIA = `Character devices:
  1 mem
195 nvidia-frontend
195 nvidia
237 nvidia-uvm
240 vfio

Block devices:
  8 sd
237 nvidia-uvm-not-a-chardev
`

var testDriver = Driver{Version: "535.104.05", DriverDirs: DriverDirs{LibDir: "/opt/nvidia/535/lib", BinDir: "/opt/nvidia/535/bin"}}

func TestVFIOGroup(t *testing.T) {
	devs := fakeDevices(t, "v100-16gb.json")
	root := fakeHost(t, devs, nil, procDevicesNVIDIA)
	tests := []struct {
		bus     string
		want    string
		wantErr bool
	}{
		{devs[0].PCIBusID, "40", false},
		{"00000000:B2:00.0", "47", false}, // NVML's form is normalised
		{"0000:ff:00.0", "", true},
	}
	for _, tt := range tests {
		got, err := VFIOGroup(root, tt.bus)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("VFIOGroup(%q) = %q, %v; want %q", tt.bus, got, err, tt.want)
		}
	}
}

func TestApplyKata(t *testing.T) {
	devs := fakeDevices(t, "v100-32gb.json")
	root := fakeHost(t, devs, map[int]bool{5: true}, procDevicesNVIDIA)
	spec := &specs.Spec{
		Process:     &specs.Process{Env: []string{"PATH=/usr/bin", "LD_LIBRARY_PATH=/app/lib"}},
		Annotations: map[string]string{"keep": "me"},
	}
	if err := ApplyKata(spec, []Device{devs[2], devs[3]}, testDriver, root); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cdi.k8s.io/vfio42": "nvidia.com/pgpu=0", "cdi.k8s.io/vfio43": "nvidia.com/pgpu=1", "keep": "me"}
	for k, v := range want {
		if spec.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, spec.Annotations[k], v)
		}
	}
	if len(spec.Linux.Devices) != 2 || spec.Linux.Devices[0].Path != "/dev/vfio/42" || spec.Linux.Devices[1].Path != "/dev/vfio/43" ||
		spec.Linux.Devices[0].Major != 240 || spec.Linux.Devices[1].Minor != 3 || spec.Linux.Devices[0].Type != "c" {
		t.Errorf("devices = %+v", spec.Linux.Devices)
	}
	rules := spec.Linux.Resources.Devices
	if len(rules) != 2 || !rules[0].Allow || *rules[0].Major != 240 || *rules[0].Minor != 2 || rules[0].Access != "rwm" {
		t.Errorf("cgroup rules = %+v", rules)
	}
	checkLibraries(t, spec, "/app/lib:"+ContainerLibDir, "/usr/bin:"+ContainerBinDir)

	// Applying twice changes nothing.
	if err := ApplyKata(spec, []Device{devs[2], devs[3]}, testDriver, root); err != nil {
		t.Fatal(err)
	}
	if len(spec.Linux.Devices) != 2 || len(spec.Linux.Resources.Devices) != 2 || len(spec.Mounts) != 2 {
		t.Errorf("second apply duplicated entries: %d devices, %d rules, %d mounts", len(spec.Linux.Devices), len(spec.Linux.Resources.Devices), len(spec.Mounts))
	}

	// A GPU not bound to vfio-pci is a node error naming the group.
	err := ApplyKata(&specs.Spec{}, []Device{devs[5]}, testDriver, root)
	if err == nil || !strings.Contains(err.Error(), "vfio group 45 is not set up") {
		t.Errorf("unbound GPU: %v", err)
	}
}

func TestApplyRunc(t *testing.T) {
	devs := fakeDevices(t, "t4.json")
	root := fakeHost(t, devs, nil, procDevicesNVIDIA)
	spec := &specs.Spec{
		Process: &specs.Process{Env: []string{"HOME=/root"}},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc"}, {Destination: ContainerLibDir, Type: "bind", Source: "/evil"}},
		Linux:   &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}},
	}
	if err := ApplyRunc(spec, []Device{devs[1], devs[3]}, testDriver, root); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int64{
		"/dev/fuse": {10, 229}, "/dev/nvidia1": {195, 1}, "/dev/nvidia3": {195, 3}, "/dev/nvidiactl": {195, 255},
		"/dev/nvidia-modeset": {195, 254}, "/dev/nvidia-uvm": {237, 0}, "/dev/nvidia-uvm-tools": {237, 1},
	}
	if len(spec.Linux.Devices) != len(want) {
		t.Fatalf("devices = %+v", spec.Linux.Devices)
	}
	for _, d := range spec.Linux.Devices {
		if w, ok := want[d.Path]; !ok || w != [2]int64{d.Major, d.Minor} {
			t.Errorf("device %s %d:%d unexpected", d.Path, d.Major, d.Minor)
		}
	}
	if len(spec.Linux.Resources.Devices) != 6 {
		t.Errorf("cgroup rules = %d, want 6", len(spec.Linux.Resources.Devices))
	}
	checkLibraries(t, spec, ContainerLibDir, DefaultPath+":"+ContainerBinDir)

	noUVM := fakeHost(t, devs, nil, "Character devices:\n195 nvidia\n")
	if err := ApplyRunc(&specs.Spec{}, devs[:1], testDriver, noUVM); err == nil || !strings.Contains(err.Error(), "nvidia-uvm is not in /proc/devices") {
		t.Errorf("missing uvm: %v", err)
	}
}

func checkLibraries(t *testing.T, spec *specs.Spec, wantLD, wantPath string) {
	t.Helper()
	var lib, bin *specs.Mount
	for i, m := range spec.Mounts {
		switch m.Destination {
		case ContainerLibDir:
			if lib != nil {
				t.Errorf("two mounts at %s", ContainerLibDir)
			}
			lib = &spec.Mounts[i]
		case ContainerBinDir:
			bin = &spec.Mounts[i]
		}
	}
	if lib == nil || bin == nil || lib.Source != testDriver.LibDir || bin.Source != testDriver.BinDir {
		t.Fatalf("mounts = %+v", spec.Mounts)
	}
	if strings.Join(lib.Options, ",") != "bind,ro,nosuid,nodev" || lib.Type != "bind" {
		t.Errorf("lib mount options = %v", lib.Options)
	}
	env := strings.Join(spec.Process.Env, "\n")
	if !strings.Contains(env, "LD_LIBRARY_PATH="+wantLD+"\n") && !strings.HasSuffix(env, "LD_LIBRARY_PATH="+wantLD) {
		t.Errorf("env = %q, want LD_LIBRARY_PATH=%s", env, wantLD)
	}
	if !strings.Contains(env, "PATH="+wantPath) {
		t.Errorf("env = %q, want PATH=%s", env, wantPath)
	}
}

func TestKataConfig(t *testing.T) {
	got := KataConfig(8)
	for _, want := range []string{"[hypervisor.qemu]", `cold_plug_vfio = "root-port"`, "pcie_root_port = 8", `machine_type = "q35"`} {
		if !strings.Contains(got, want) {
			t.Errorf("KataConfig lacks %q:\n%s", want, got)
		}
	}
}
