package iothrottle

import (
	"errors"
	"github.com/cci-shim/cci-shim/internal/testutil"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
)

func TestRootfsDeviceNoBlockDevice(t *testing.T) {
	file := sparseFile(t, 1<<20)
	tests := []struct {
		name   string
		mounts []*types.Mount
		noDev  bool // want ErrNoBlockDevice; else another error
	}{
		{name: "overlay", noDev: true, mounts: []*types.Mount{{Type: "overlay", Source: "overlay",
			Options: []string{"lowerdir=/a", "upperdir=/b", "workdir=/c"}}}},
		{name: "no mounts", noDev: true},
		{name: "two mounts", noDev: true, mounts: []*types.Mount{{Type: "bind", Source: "/"}, {Type: "bind", Source: "/"}}},
		{name: "bind of a directory", noDev: true, mounts: []*types.Mount{{Type: "bind", Source: t.TempDir(), Options: []string{"rbind"}}}},
		{name: "file without loop option", noDev: true, mounts: []*types.Mount{{Type: "ext4", Source: file}}},
		{name: "char device", noDev: true, mounts: []*types.Mount{{Type: "ext4", Source: "/dev/null"}}},
		{name: "missing devmapper device", mounts: []*types.Mount{{Type: "ext4", Source: "/dev/mapper/cci-no-such-device"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := RootfsDevice(tt.mounts)
			if d != nil || err == nil || errors.Is(err, ErrNoBlockDevice) != tt.noDev {
				t.Fatalf("RootfsDevice = %+v, %v; want ErrNoBlockDevice=%v", d, err, tt.noDev)
			}
		})
	}
}

func loopSysfs(dev string) string { return "/sys/block/" + filepath.Base(dev) + "/loop/" }

func TestRootfsDeviceLoop(t *testing.T) {
	testutil.RequireRoot(t, "loop devices, cgroups")
	file := sparseFile(t, 64<<20)
	in := []*types.Mount{{Type: "ext4", Source: file, Options: []string{"loop", "rw"}}}
	d, err := RootfsDevice(in)
	if err != nil {
		t.Fatalf("RootfsDevice: %v", err)
	}
	defer d.Close()
	m := d.Mounts[0]
	if !strings.HasPrefix(m.Source, "/dev/loop") || m.Source != d.Path || m.Type != "ext4" ||
		!slices.Equal(m.Options, []string{"rw"}) || !d.Attached || d.Major != 7 {
		t.Fatalf("got %+v mount %+v", d, m)
	}
	if in[0].Source != file || len(in[0].Options) != 2 {
		t.Errorf("input mount modified: %+v", in[0])
	}
	backing, err := os.ReadFile(loopSysfs(d.Path) + "backing_file")
	if err != nil || strings.TrimSpace(string(backing)) != file {
		t.Fatalf("backing file %q (%v), want %s", backing, err, file)
	}
	if ac, _ := os.ReadFile(loopSysfs(d.Path) + "autoclear"); strings.TrimSpace(string(ac)) != "1" {
		t.Errorf("autoclear = %q, want 1", ac)
	}
	var st os.FileInfo
	if st, err = os.Stat(d.Path); err != nil || st.Mode()&os.ModeDevice == 0 {
		t.Fatalf("stat %s: %v", d.Path, err)
	}

	// The same device handed over by containerd (the devmapper shape:
	// a block device source) is recognised without attaching anything.
	same, err := RootfsDevice([]*types.Mount{{Type: "ext4", Source: d.Path}})
	if err != nil || same.Attached || same.Major != d.Major || same.Minor != d.Minor || same.Mounts[0].Source != d.Path {
		t.Fatalf("block device source: %+v, %v", same, err)
	}
	if err := same.Close(); err != nil {
		t.Fatal(err)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Autoclear detaches the device once the last opener is gone.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(loopSysfs(d.Path) + "backing_file"); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still attached after Close", d.Path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
