package sandbox

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CRI on cgroup v1 sets swap equal to the limit; a raised limit must raise
// swap too, or runc's memsw write fails and the container cannot start.
func TestWriteContainerResourcesSwap(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name              string
		limit, swap, want *int64
	}{
		{"swap equal to limit follows it", i64(1 << 30), i64(1 << 30), i64(3 << 29)},
		{"extra swap is kept", i64(1 << 30), i64(2 << 30), i64(5 << 29)},
		{"unlimited swap stays", i64(1 << 30), i64(-1), i64(-1)},
		{"no swap stays unset", i64(1 << 30), nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: tc.limit, Swap: tc.swap}}}}
			WriteContainerResources(spec, Resources{MilliCPU: 500, Memory: 3 << 29})
			got := spec.Linux.Resources.Memory.Swap
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("swap = %v, want %v", deref(got), deref(tc.want))
			}
		})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
