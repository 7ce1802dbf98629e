package sandbox

import (
	"runtime"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// TestSeccompNativeArch: on a backend sharing the host kernel the filter
// admits the native syscall ABI only, whether the shim installs the
// default profile or CRI sent containerd's (RuntimeDefault), unless
// policy.allow_compat_syscalls keeps the 32-bit ABIs; a kernel-isolating
// backend's filter is left as sent.
func TestSeccompNativeArch(t *testing.T) {
	if nativeArch == "" {
		t.Skipf("no native seccomp architecture known for %s", runtime.GOARCH)
	}
	full := seccomp.DefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}).Architectures
	if len(full) < 2 || !slices.Contains(full, nativeArch) {
		t.Fatalf("containerd's default profile lists %v: the test needs the native and a 32-bit ABI", full)
	}
	for _, tc := range []struct {
		name      string
		isolation backend.Isolation
		compat    bool
		sent      bool // the spec carries containerd's profile
		want      []specs.Arch
	}{
		{"runc, installed", backend.IsolationNone, false, false, []specs.Arch{nativeArch}},
		{"runc, RuntimeDefault", backend.IsolationNone, false, true, []specs.Arch{nativeArch}},
		{"runc, installed, compat allowed", backend.IsolationNone, true, false, full},
		{"runc, RuntimeDefault, compat allowed", backend.IsolationNone, true, true, full},
		{"gvisor, RuntimeDefault", backend.IsolationUserKernel, false, true, full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}, Linux: &specs.Linux{}}
			if tc.sent {
				spec.Linux.Seccomp = seccomp.DefaultProfile(spec)
			}
			cfg := &Config{Isolation: tc.isolation, AllowCompatSyscalls: tc.compat}
			installed, err := checkSeccomp("c1", spec, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if installed == tc.sent {
				t.Errorf("installed %v for a spec that carried a profile: %v", installed, tc.sent)
			}
			if got := spec.Linux.Seccomp.Architectures; !slices.Equal(got, tc.want) {
				t.Errorf("architectures %v, want %v", got, tc.want)
			}
		})
	}
}
