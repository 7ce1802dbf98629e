package sandbox

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specPaths lists every JSON field path of the runtime-spec types under t.
func specPaths(t reflect.Type, prefix string, out map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		specPaths(t.Elem(), prefix+"[]", out)
		return
	case reflect.Map:
		specPaths(t.Elem(), prefix+"{}", out)
		return
	case reflect.Struct:
	default:
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		p := jsonName(f)
		if prefix != "" {
			p = prefix + "." + p
		}
		out[p] = true
		specPaths(f.Type, p, out)
	}
}

func specHasPath(p string) bool {
	all := map[string]bool{}
	specPaths(reflect.TypeOf(specs.Spec{}), "", all)
	return all[p]
}

// TestRefusedFields: the fields the platform never passes are absent from
// the allow-list, and a spec setting any of them is refused by name.
func TestRefusedFields(t *testing.T) {
	for _, tc := range []struct {
		field string
		mut   func(*specs.Spec)
	}{
		{"hooks", func(s *specs.Spec) { s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh"}}} }},
		{"linux.uidMappings", func(s *specs.Spec) { s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 0, Size: 1}} }},
		{"linux.netDevices", func(s *specs.Spec) { s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth0": {}} }},
		{"linux.intelRdt", func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "x"} }},
		{"linux.timeOffsets", func(s *specs.Spec) { s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}} }},
		{"linux.memoryPolicy", func(s *specs.Spec) { s.Linux.MemoryPolicy = &specs.LinuxMemoryPolicy{Mode: "MPOL_BIND"} }},
		{"linux.resources.rdma", func(s *specs.Spec) { s.Linux.Resources.Rdma = map[string]specs.LinuxRdma{"mlx": {}} }},
		{"linux.resources.blockIO.throttleReadBpsDevice", func(s *specs.Spec) {
			s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1 << 40}}}
		}},
		{"linux.seccomp.listenerPath", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, ListenerPath: "/run/agent.sock"}
		}},
		{"mounts[].uidMappings", func(s *specs.Spec) { s.Mounts[0].UIDMappings = []specs.LinuxIDMapping{{Size: 1}} }},
		{"windows", func(s *specs.Spec) { s.Windows = &specs.Windows{LayerFolders: []string{"C:\\"}} }},
		{"vm", func(s *specs.Spec) { s.VM = &specs.VM{Kernel: specs.VMKernel{Path: "/boot/vmlinuz"}} }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			if knownFields[tc.field] != 0 {
				t.Fatalf("%s is in the allow-list", tc.field)
			}
			s := criContainer()
			tc.mut(s)
			err := checkFields("app", s)
			if err == nil || !strings.Contains(err.Error(), tc.field+` "`) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// TestEveryFieldClassified prints nothing when every runtime-spec path is
// either known or deliberately refused: a new runtime-spec field shows up
// here as unclassified and is refused at run time until someone decides.
func TestEveryFieldClassified(t *testing.T) {
	all := map[string]bool{}
	specPaths(reflect.TypeOf(specs.Spec{}), "", all)
	var leafs []string
	for p := range all {
		if knownFields[p] != 0 {
			continue
		}
		// A path below a known leaf is covered by the leaf's own check.
		covered := false
		for q, k := range knownFields {
			if k == leaf && (strings.HasPrefix(p, q+".") || strings.HasPrefix(p, q+"[]") || strings.HasPrefix(p, q+"{}")) {
				covered = true
			}
		}
		if !covered {
			leafs = append(leafs, p)
		}
	}
	slices.Sort(leafs)
	// These are refused; the list documents them.
	for _, p := range []string{"hooks", "linux.uidMappings", "linux.gidMappings", "linux.netDevices", "linux.intelRdt",
		"linux.memoryPolicy", "linux.timeOffsets", "linux.resources.rdma", "linux.seccomp.listenerPath",
		"linux.seccomp.listenerMetadata", "mounts[].uidMappings", "mounts[].gidMappings", "solaris", "windows", "vm", "zos", "freebsd",
		"process.commandLine", "process.user.username"} {
		if !slices.Contains(leafs, p) {
			t.Errorf("%s should be refused (not in knownFields)", p)
		}
	}
}
