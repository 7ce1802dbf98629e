package gpu

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Device numbers of the NVIDIA character devices (runc backend).
const (
	nvidiaMajor        = 195 // /dev/nvidia<minor>, /dev/nvidiactl, /dev/nvidia-modeset
	nvidiaCtlMinor     = 255
	nvidiaModesetMinor = 254
)

// KataVFIOAnnotation returns the CDI annotation Kata's runtime uses to tell its
// agent which guest GPU a cold-plugged VFIO group is: key cdi.k8s.io/vfio<group>,
// value nvidia.com/pgpu=<ordinal of the GPU in the pod>.
func KataVFIOAnnotation(group string, ordinal int) (key, value string) {
	return cdiVFIOPrefix + group, fmt.Sprintf("nvidia.com/pgpu=%d", ordinal)
}

// KataConfig renders the configuration.toml lines the packaging needs in Kata's
// [hypervisor.qemu] section so the VFIO devices in the spec are cold-plugged on
// PCIe root ports before the guest boots. maxGPUs is the most GPUs per pod.
func KataConfig(maxGPUs int) string {
	if maxGPUs < 1 {
		maxGPUs = 1
	}
	return fmt.Sprintf(`[hypervisor.qemu]
# cci-shim GPU passthrough (R11): VFIO devices named in the OCI spec are
# cold-plugged on PCIe root ports; GPUs need a q35 machine.
machine_type = "q35"
cold_plug_vfio = "root-port"
hot_plug_vfio = "no-port"
pcie_root_port = %d
`, maxGPUs)
}

// VFIOGroup returns the IOMMU group of the PCI device busID, read from
// <root>/sys/bus/pci/devices/<bus id>/iommu_group (a symlink to
// .../iommu_groups/<group>).
func VFIOGroup(root, busID string) (string, error) {
	link := filepath.Join(root, "sys/bus/pci/devices", NormalizeBusID(busID), "iommu_group")
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("reading iommu group of %s (is the IOMMU on?): %w", busID, err)
	}
	g := filepath.Base(target)
	if _, err := strconv.Atoi(g); err != nil {
		return "", fmt.Errorf("iommu group of %s: unexpected link target %q", busID, target)
	}
	return g, nil
}

// vfioDevNumbers reads /dev/vfio/<group>'s major:minor from
// <root>/sys/class/vfio/<group>/dev, which exists only once the group's devices
// are bound to vfio-pci.
func vfioDevNumbers(root, group string) (int64, int64, error) {
	b, err := os.ReadFile(filepath.Join(root, "sys/class/vfio", group, "dev"))
	if err != nil {
		return 0, 0, fmt.Errorf("vfio group %s is not set up (is the GPU bound to vfio-pci?): %w", group, err)
	}
	return parseDevNumbers(strings.TrimSpace(string(b)))
}

func parseDevNumbers(s string) (int64, int64, error) {
	ma, mi, ok := strings.Cut(s, ":")
	major, err1 := strconv.ParseInt(ma, 10, 64)
	minor, err2 := strconv.ParseInt(mi, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parsing device numbers %q", s)
	}
	return major, minor, nil
}

// ApplyKata describes devices for Kata: each GPU's /dev/vfio/<group> as a
// linux.devices entry with a device-cgroup allow rule (Kata cold-plugs it, see
// KataConfig), the cdi.k8s.io/vfio<group> annotation, and the driver libraries.
// root is the host root holding sys/.
func ApplyKata(spec *specs.Spec, devices []Device, drv Driver, root string) error {
	if spec == nil {
		return errors.New("applying gpus for kata: nil spec")
	}
	var nodes []specs.LinuxDevice
	anns := map[string]string{}
	for i, d := range devices {
		group, err := VFIOGroup(root, d.PCIBusID)
		if err != nil {
			return fmt.Errorf("applying gpu %s for kata: %w", d.UUID, err)
		}
		major, minor, err := vfioDevNumbers(root, group)
		if err != nil {
			return fmt.Errorf("applying gpu %s for kata: %w", d.UUID, err)
		}
		nodes = append(nodes, charDevice("/dev/vfio/"+group, major, minor))
		k, v := KataVFIOAnnotation(group, i)
		anns[k] = v
	}
	addDevices(spec, nodes)
	if spec.Annotations == nil {
		spec.Annotations = map[string]string{}
	}
	for k, v := range anns {
		spec.Annotations[k] = v
	}
	return ApplyLibraries(spec, drv)
}

// ApplyRunc describes devices for the runc backend (development): the host's
// /dev/nvidia<minor> of each GPU plus /dev/nvidiactl, /dev/nvidia-modeset,
// /dev/nvidia-uvm and /dev/nvidia-uvm-tools with device-cgroup allow rules (the
// uvm major is read from <root>/proc/devices), and the driver libraries.
func ApplyRunc(spec *specs.Spec, devices []Device, drv Driver, root string) error {
	if spec == nil {
		return errors.New("applying gpus for runc: nil spec")
	}
	uvm, err := procDeviceMajor(root, "nvidia-uvm")
	if err != nil {
		return fmt.Errorf("applying gpus for runc: %w", err)
	}
	var nodes []specs.LinuxDevice
	for _, d := range devices {
		nodes = append(nodes, charDevice(fmt.Sprintf("/dev/nvidia%d", d.Minor), nvidiaMajor, int64(d.Minor)))
	}
	nodes = append(nodes,
		charDevice("/dev/nvidiactl", nvidiaMajor, nvidiaCtlMinor),
		charDevice("/dev/nvidia-modeset", nvidiaMajor, nvidiaModesetMinor),
		charDevice("/dev/nvidia-uvm", uvm, 0),
		charDevice("/dev/nvidia-uvm-tools", uvm, 1),
	)
	addDevices(spec, nodes)
	return ApplyLibraries(spec, drv)
}

// procDeviceMajor finds name's character-device major in <root>/proc/devices.
func procDeviceMajor(root, name string) (int64, error) {
	f, err := os.Open(filepath.Join(root, "proc/devices"))
	if err != nil {
		return 0, fmt.Errorf("reading /proc/devices: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "Block devices:" {
			break
		}
		fields := strings.Fields(line)
		if len(fields) == 2 && fields[1] == name {
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading /proc/devices: %w", err)
	}
	return 0, fmt.Errorf("%s is not in /proc/devices (is its kernel module loaded?)", name)
}

func charDevice(path string, major, minor int64) specs.LinuxDevice {
	mode := os.FileMode(0o666)
	zero := uint32(0)
	return specs.LinuxDevice{Path: path, Type: "c", Major: major, Minor: minor, FileMode: &mode, UID: &zero, GID: &zero}
}

// addDevices adds nodes to linux.devices (replacing entries with the same path)
// and allows each in the device cgroup.
func addDevices(spec *specs.Spec, nodes []specs.LinuxDevice) {
	if len(nodes) == 0 {
		return
	}
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	byPath := map[string]bool{}
	for _, n := range nodes {
		byPath[n.Path] = true
	}
	kept := spec.Linux.Devices[:0:0]
	for _, d := range spec.Linux.Devices {
		if !byPath[d.Path] {
			kept = append(kept, d)
		}
	}
	spec.Linux.Devices = append(kept, nodes...)
	for _, n := range nodes {
		major, minor := n.Major, n.Minor
		rule := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
		if !hasRule(spec.Linux.Resources.Devices, rule) {
			spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, rule)
		}
	}
}

func hasRule(rules []specs.LinuxDeviceCgroup, r specs.LinuxDeviceCgroup) bool {
	for _, x := range rules {
		if x.Allow == r.Allow && x.Type == r.Type && x.Access == r.Access &&
			x.Major != nil && x.Minor != nil && *x.Major == *r.Major && *x.Minor == *r.Minor {
			return true
		}
	}
	return false
}
