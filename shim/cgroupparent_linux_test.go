package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/sandbox"
)

func TestRemoveCgroupDir(t *testing.T) {
	for _, p := range []string{"/kubepods/besteffort/pod1", "/cci-shim/../kubepods", "cci-shim/x", "/cci-shim", "/cci-shim/"} {
		if err := removeCgroupDir(p); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("removeCgroupDir(%q) = %v, want a refusal", p, err)
		}
	}
	testutil.RequireRoot(t, "cgroups are created and removed in the host's hierarchies")
	p := fmt.Sprintf("%s/unit-%d/pod-x", sandbox.DefaultCgroupRoot, os.Getpid())
	var made []string
	for _, ctl := range []string{"memory", "pids", "unified", ""} {
		d := filepath.Join(cgroupRoot, ctl, p)
		if _, err := os.Stat(filepath.Join(cgroupRoot, ctl, "cgroup.procs")); err != nil {
			continue // not a hierarchy on this host
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, d)
	}
	if len(made) == 0 {
		testutil.Unavailable(t, "no cgroup hierarchy under %s", cgroupRoot)
	}
	t.Cleanup(func() {
		for _, d := range made {
			os.Remove(d)
			os.Remove(filepath.Dir(d))
		}
	})
	if err := removeCgroupDir(p); err != nil {
		t.Fatal(err)
	}
	for _, d := range made {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", d, err)
		}
	}
	if err := removeCgroupDir(p); err != nil {
		t.Errorf("removing it again: %v", err)
	}
}
