package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"

	"github.com/containerd/cgroups/v3"

	"github.com/cci-shim/cci-shim/internal/testutil"
)

// The caps are read and written in the host's real cgroup hierarchy.
func TestCgroupLimitsRoundTrip(t *testing.T) {
	testutil.RequireRoot(t, "cgroups")
	p := fmt.Sprintf("/kubepods-cci-test-%d/pod0b5b0d4e", os.Getpid())
	dirs := []string{"/sys/fs/cgroup" + p}
	if cgroups.Mode() != cgroups.Unified {
		dirs = []string{"/sys/fs/cgroup/cpu" + p, "/sys/fs/cgroup/memory" + p}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			os.Remove(d)
			os.Remove(d[:len(d)-len("/pod0b5b0d4e")])
		}
	})
	fresh, err := ReadCgroupLimits(p)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Quota != -1 || fresh.Memory != -1 || fresh.Period == 0 {
		t.Errorf("a new cgroup reads %+v, want no quota and no memory cap", fresh)
	}
	want := CgroupLimits{Quota: 75000, Period: 100000, Memory: 1164 << 20}
	if err := WriteCgroupLimits(p, want); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadCgroupLimits(p); err != nil || got != want {
		t.Errorf("read back %+v (%v), want %+v", got, err, want)
	}
	if err := WriteCgroupLimits(p, fresh); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadCgroupLimits(p); err != nil || got != fresh {
		t.Errorf("restored %+v (%v), want %+v", got, err, fresh)
	}
	// kubelet removes its pod cgroup: a late write fails as not found and
	// does not bring the cgroup back.
	for _, d := range dirs {
		if err := os.Remove(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteCgroupLimits(p, want); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("writing into a removed cgroup: %v, want an error matching fs.ErrNotExist", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("writing the caps recreated %s", d)
		}
	}
	if _, err := ReadCgroupLimits("/../etc"); err == nil {
		t.Error("an unclean cgroup path was read")
	}
}
