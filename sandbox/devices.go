package sandbox

import (
	"fmt"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Devices (R24). A tenant spec may name only the OCI default devices, which
// every runtime creates anyway and which reach no host resource:
// /dev/null, zero, full, random, urandom, tty, console, ptmx (and the
// pod's own ptys, char 136:*). Anything else — a CRI `devices` entry for a
// host block device, /dev/fuse, /dev/net/tun, /dev/kvm — is refused. The
// GPU nodes the shim itself hands a pod are added after the policy ran
// (gpu.ApplyRunc), so they never pass through here.
//
// Device cgroup rules: deny rules are always fine; an allow rule must be a
// char rule for one of those devices (or the pts major), with access in
// "rwm". The list is made to start with deny-all (prepended when missing),
// so that nothing the runtime inherits stays allowed.

type devID struct {
	major, minor int64
}

// defaultDevices are the OCI default devices (runtime-spec config-linux.md,
// containerd's WithDefaultUnixDevices).
var defaultDevices = map[devID]string{
	{1, 3}: "/dev/null", {1, 5}: "/dev/zero", {1, 7}: "/dev/full", {1, 8}: "/dev/random",
	{1, 9}: "/dev/urandom", {5, 0}: "/dev/tty", {5, 1}: "/dev/console", {5, 2}: "/dev/ptmx",
}

const ptsMajor = 136

const allowedDevicesText = "the OCI default devices /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty, /dev/console, /dev/ptmx and the pod's ptys"

// checkDevices refuses linux.devices entries other than the defaults.
func checkDevices(container string, spec *specs.Spec) error {
	if spec.Linux == nil {
		return nil
	}
	for _, d := range spec.Linux.Devices {
		_, known := defaultDevices[devID{d.Major, d.Minor}]
		p := d.Path
		if d.Type != "c" || !known || !strings.HasPrefix(p, "/dev/") || filepath.Clean(p) != p {
			return &PolicyError{Container: container, Field: "linux.devices", Value: clip(fmt.Sprintf("%s %s %d:%d", p, d.Type, d.Major, d.Minor)),
				Allowed: allowedDevicesText}
		}
	}
	return nil
}

// checkDeviceRules checks linux.resources.devices and makes it start with
// deny-all.
func checkDeviceRules(container string, spec *specs.Spec) error {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	rules := spec.Linux.Resources.Devices
	for _, r := range rules {
		if strings.Trim(r.Access, "rwm") != "" {
			return &PolicyError{Container: container, Field: "linux.resources.devices", Value: ruleText(r), Allowed: `access made of "r", "w", "m"`}
		}
		if !r.Allow {
			continue
		}
		if !allowedRule(r) {
			return &PolicyError{Container: container, Field: "linux.resources.devices", Value: ruleText(r),
				Reason: "allows a device", Allowed: "allow rules for " + allowedDevicesText}
		}
	}
	if len(rules) == 0 || !isDenyAll(rules[0]) {
		spec.Linux.Resources.Devices = append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, rules...)
	}
	return nil
}

func allowedRule(r specs.LinuxDeviceCgroup) bool {
	if r.Type != "c" || r.Major == nil {
		return false
	}
	if r.Minor == nil {
		return *r.Major == ptsMajor
	}
	if *r.Major == ptsMajor {
		return true
	}
	_, ok := defaultDevices[devID{*r.Major, *r.Minor}]
	return ok
}

func isDenyAll(r specs.LinuxDeviceCgroup) bool {
	return !r.Allow && (r.Type == "" || r.Type == "a") && r.Major == nil && r.Minor == nil &&
		(r.Access == "" || r.Access == "rwm")
}

func ruleText(r specs.LinuxDeviceCgroup) string {
	n := func(p *int64) string {
		if p == nil {
			return "*"
		}
		return fmt.Sprint(*p)
	}
	verb := "deny"
	if r.Allow {
		verb = "allow"
	}
	t := r.Type
	if t == "" {
		t = "a"
	}
	return clip(fmt.Sprintf("%s %s %s:%s %s", verb, t, n(r.Major), n(r.Minor), r.Access))
}
