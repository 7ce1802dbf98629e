package iothrottle

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/containerd/api/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/internal/testutil"
)

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestApplyToCgroupFixture drives both cgroup versions against fixture
// trees (plain directories: each write lands in a plain file).
func TestApplyToCgroupFixture(t *testing.T) {
	l := DefaultNodeLimits().Rootfs
	t.Run("v1 blkio", func(t *testing.T) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "blkio", "kata_abc"), 0o755); err != nil {
			t.Fatal(err)
		}
		blkioLimitFiles(t, filepath.Join(root, "blkio", "kata_abc"))
		c := cgroupFS{root: root}
		if err := c.apply("/kata_abc", 7, 3, l); err != nil {
			t.Fatal(err)
		}
		for file, want := range map[string]string{
			"blkio.throttle.read_bps_device": "7:3 6000000", "blkio.throttle.write_bps_device": "7:3 6000000",
			"blkio.throttle.read_iops_device": "7:3 1000", "blkio.throttle.write_iops_device": "7:3 1000",
		} {
			if got := readTrim(t, filepath.Join(root, "blkio", "kata_abc", file)); got != want {
				t.Errorf("%s = %q, want %q", file, got, want)
			}
		}
		if err := c.apply("/kata_missing", 7, 3, l); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing cgroup: %v, want an error matching fs.ErrNotExist", err)
		}
		if _, err := os.Stat(filepath.Join(root, "blkio", "kata_missing")); err == nil {
			t.Error("writing limits created the missing cgroup")
		}
	})
	t.Run("v2 io.max", func(t *testing.T) {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "kata_abc"), 0o755); err != nil {
			t.Fatal(err)
		}
		c := cgroupFS{unified: true, root: root}
		if err := c.apply("/kata_abc", 7, 3, DeviceLimits{WriteIOPS: 1000}); err != nil {
			t.Fatal(err)
		}
		// A fixture keeps only the last of the four io.max writes.
		if got := readTrim(t, filepath.Join(root, "kata_abc", "io.max")); got != "7:3 wiops=1000" {
			t.Errorf("io.max = %q", got)
		}
		if err := os.WriteFile(filepath.Join(root, "kata_abc", "io.stat"),
			[]byte("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n7:3 rbytes=10 wbytes=20 rios=30 wios=40 dbytes=0 dios=0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := c.stats("/kata_abc", 7, 3)
		if err != nil || s != (DeviceIOStats{ReadBytes: 10, WriteBytes: 20, ReadIOs: 30, WriteIOs: 40}) {
			t.Errorf("stats = %+v, %v", s, err)
		}
	})
	t.Run("bad paths", func(t *testing.T) {
		for _, p := range []string{"kata_abc", "/a/../b", "system.slice:cri:x"} {
			if err := (cgroupFS{root: t.TempDir()}).apply(p, 7, 3, l); err == nil {
				t.Errorf("path %q: want an error", p)
			}
		}
	})
}

// blkioLimitFiles creates the empty v1 throttle files a fixture cgroup
// directory needs: the shim writes cgroup files, it never creates them.
func blkioLimitFiles(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"read_bps_device", "write_bps_device", "read_iops_device", "write_iops_device"} {
		f, err := os.OpenFile(filepath.Join(dir, "blkio.throttle."+name), os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

func TestIOMaxEntries(t *testing.T) {
	got := ioMaxEntries(7, 3, DeviceLimits{ReadBps: 6_000_000, WriteIOPS: 1000})
	want := []string{"7:3 rbps=6000000", "7:3 wbps=18446744073709551615", "7:3 riops=18446744073709551615", "7:3 wiops=1000"}
	for i, e := range got {
		if e.String() != want[i] {
			t.Errorf("entry %d = %q, want %q", i, e, want[i])
		}
	}
}

// TestApplyToCgroupLoopDevice applies the throttle to a real loop device in
// a fresh blkio cgroup (cgroup v1 hosts), writes through it with direct I/O
// and reads the statistics back.
func TestApplyToCgroupLoopDevice(t *testing.T) {
	testutil.RequireRoot(t, "loop devices, cgroups")
	d, path := loopInBlkioCgroup(t, "cci-iothrottle-test")

	if err := ApplyToCgroup(path, d.Major, d.Minor, DefaultNodeLimits().Rootfs); err != nil {
		t.Fatal(err)
	}
	dir := "/sys/fs/cgroup/blkio" + path
	dev := fmt.Sprintf("%d:%d", d.Major, d.Minor)
	for file, want := range map[string]string{
		"blkio.throttle.write_bps_device": dev + " 6000000", "blkio.throttle.read_bps_device": dev + " 6000000",
		"blkio.throttle.write_iops_device": dev + " 1000", "blkio.throttle.read_iops_device": dev + " 1000",
	} {
		if got := readTrim(t, filepath.Join(dir, file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}

	// 16 direct 64 KiB writes from a process inside the cgroup (~0.2 s at
	// 6 MB/s).
	cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec dd if=/dev/zero of="$2" bs=65536 count=16 oflag=direct status=none`,
		"sh", dir, d.Path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dd: %v: %s", err, out)
	}
	s, err := DeviceStats(path, d.Major, d.Minor)
	if err != nil {
		t.Fatal(err)
	}
	if s.WriteBytes != 16*65536 || s.WriteIOs < 16 || s.ReadBytes != 0 {
		t.Errorf("stats %+v, want 1 MiB written in >= 16 IOs", s)
	}

	// All-zero limits remove the throttle.
	if err := ApplyToCgroup(path, d.Major, d.Minor, DeviceLimits{}); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, filepath.Join(dir, "blkio.throttle.write_bps_device")); got != "" {
		t.Errorf("after removal write_bps_device = %q", got)
	}
}

// loopInBlkioCgroup attaches a 64 MiB ext4 loop device and creates an empty
// blkio cgroup /<name>-<pid> for it (cgroup v1 hosts; the test is skipped
// elsewhere). Both go when the test ends.
func loopInBlkioCgroup(t *testing.T, name string) (*BlockDevice, string) {
	t.Helper()
	if hostCgroups().unified {
		t.Skip("cgroup v2 host: the blkio test needs a v1 blkio hierarchy (io.max is covered by the fixture tests)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/blkio"); err != nil {
		t.Skipf("no blkio hierarchy: %v", err)
	}
	d, err := RootfsDevice([]*types.Mount{{Type: "ext4", Source: sparseFile(t, 64<<20), Options: []string{"loop", "rw"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	path := fmt.Sprintf("/%s-%d", name, os.Getpid())
	blkioOnly := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{cgroup1.NewBlkio("/sys/fs/cgroup")}, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(path), &specs.LinuxResources{}, cgroup1.WithHierarchy(blkioOnly))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cg.Delete(); err != nil {
			t.Errorf("delete cgroup: %v", err)
		}
	})
	return d, path
}

// TestDeviceCounters reads fixture files through descriptors opened once:
// a file past the first buffer is read whole, a rewritten file is read
// afresh, and closed counters refuse to read.
func TestDeviceCounters(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "blkio", "pod")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, r, w uint64) {
		t.Helper()
		// Other devices first, so that the device's lines lie past the
		// first 512-byte buffer.
		data := append(bytes.Repeat([]byte("8:0 Read 123\n"), 200), fmt.Sprintf("7:3 Read %d\n7:3 Write %d\nTotal 1\n", r, w)...)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("blkio.throttle.io_service_bytes_recursive", 10, 20)
	write("blkio.throttle.io_serviced_recursive", 1, 2)
	d, err := cgroupFS{root: root}.openCounters("/pod", 7, 3)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := d.Read(); err != nil || s != (DeviceIOStats{ReadBytes: 10, WriteBytes: 20, ReadIOs: 1, WriteIOs: 2}) {
		t.Fatalf("first read = %+v, %v", s, err)
	}
	write("blkio.throttle.io_service_bytes_recursive", 4096, 8192)
	if s, err := d.Read(); err != nil || s != (DeviceIOStats{ReadBytes: 4096, WriteBytes: 8192, ReadIOs: 1, WriteIOs: 2}) {
		t.Fatalf("read after the counters moved = %+v, %v", s, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := d.Read(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("read after Close: %v, want fs.ErrClosed", err)
	}
	if err := (*DeviceCounters)(nil).Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
	if _, err := (cgroupFS{root: root}).openCounters("/gone", 7, 3); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing cgroup: %v, want fs.ErrNotExist", err)
	}
	if _, err := (cgroupFS{root: root}).openCounters("pod", 7, 3); err == nil {
		t.Error("relative path: want an error")
	}
}

// TestApplyRacingRemoval writes limits into a real blkio cgroup over and
// over while the cgroup is removed, as a burst watcher may while runc
// deletes the container's cgroup: the cgroup must stay removed. (Through
// cgroups/v3's v1 Update, which runs MkdirAll, a write that had loaded the
// cgroup just before the removal brought it back, empty and owned by
// nobody; TestSoak found one left in 200 cycles.)
func TestApplyRacingRemoval(t *testing.T) {
	testutil.RequireRoot(t, "loop devices, cgroups")
	d, path := loopInBlkioCgroup(t, "cci-iothrottle-race-test")
	dir := "/sys/fs/cgroup/blkio" + path
	l := DefaultNodeLimits().Rootfs
	var writes, recreated int
	// race writes the limits from another goroutine while it removes the
	// cgroup, and stops the writer before it returns.
	race := func() error {
		stop, done := make(chan struct{}), make(chan int)
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				if ApplyToCgroup(path, d.Major, d.Minor, l) == nil {
					n++
				}
			}
		}()
		defer func() { close(stop); writes += <-done }()
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		err := os.Remove(dir)
		time.Sleep(200 * time.Microsecond)
		return err
	}
	for i := range 300 {
		if i > 0 {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := race(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); err == nil {
			recreated++
			os.Remove(dir)
		}
	}
	t.Logf("300 removals during %d successful writes of the limits", writes)
	if recreated > 0 {
		t.Errorf("the cgroup came back after %d of 300 removals", recreated)
	}
}

// TestDeviceCountersCgroupRemoved reads a real blkio cgroup's counters
// through descriptors that outlive the cgroup: the kernel answers ENODEV,
// which is how a burst watcher learns that its container is gone.
func TestDeviceCountersCgroupRemoved(t *testing.T) {
	testutil.RequireRoot(t, "loop devices, cgroups")
	d, path := loopInBlkioCgroup(t, "cci-iothrottle-counters-test")
	c, err := OpenDeviceCounters(path, d.Major, d.Minor)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if s, err := c.Read(); err != nil || s != (DeviceIOStats{}) {
		t.Fatalf("fresh cgroup: %+v, %v; want zero counters", s, err)
	}
	if err := os.Remove("/sys/fs/cgroup/blkio" + path); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("read after the cgroup was removed: %v, want ENODEV", err)
	}
}
