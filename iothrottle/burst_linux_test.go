package iothrottle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/internal/testutil"
)

// fakeBurstClock fires timers only when the test says so.
type fakeBurstClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeBurstTimer
}

type fakeBurstTimer struct {
	c     *fakeBurstClock
	at    time.Time
	f     func()
	armed bool
}

func (c *fakeBurstClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeBurstClock) AfterFunc(d time.Duration, f func()) burstTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeBurstTimer{c: c, at: c.now.Add(d), f: f, armed: true}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeBurstTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

func (t *fakeBurstTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.armed
	t.at, t.armed = t.c.now.Add(d), true
	return was
}

// armed returns the armed timers and the earliest deadline.
func (c *fakeBurstClock) armed() (n int, next time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.timers {
		if t.armed {
			if n == 0 || t.at.Before(next) {
				next = t.at
			}
			n++
		}
	}
	return n, next
}

// fire moves the clock to the earliest armed timer and runs it; it
// returns the wait it skipped, or false when nothing is armed.
func (c *fakeBurstClock) fire(t *testing.T) (time.Duration, bool) {
	t.Helper()
	n, next := c.armed()
	if n == 0 {
		return 0, false
	}
	if n > 1 {
		t.Fatalf("%d timers armed; the watcher must own one", n)
	}
	c.mu.Lock()
	var tm *fakeBurstTimer
	for _, x := range c.timers {
		if x.armed {
			tm = x
		}
	}
	wait := next.Sub(c.now)
	c.now, tm.armed = next, false
	c.mu.Unlock()
	tm.f()
	return wait, true
}

// burstFixture is a fake v1 blkio cgroup "/pod" with device 7:3.
type burstFixture struct {
	t   *testing.T
	cg  cgroupFS
	dir string
	clk *fakeBurstClock
}

func newBurstFixture(t *testing.T) *burstFixture {
	root := t.TempDir()
	dir := filepath.Join(root, "blkio", "pod")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	blkioLimitFiles(t, dir)
	f := &burstFixture{t: t, cg: cgroupFS{root: root}, dir: dir, clk: &fakeBurstClock{now: simEpoch}}
	f.counters(DeviceIOStats{})
	return f
}

// counters writes the device's cumulative counters (and another device's).
func (f *burstFixture) counters(s DeviceIOStats) {
	f.t.Helper()
	write := func(name string, r, w uint64) {
		data := fmt.Sprintf("8:0 Read 77\n8:0 Write 77\n7:3 Read %d\n7:3 Write %d\n7:3 Sync 0\n7:3 Async 0\n7:3 Discard 0\n7:3 Total %d\nTotal %d\n", r, w, r+w, r+w+154)
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(data), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	write("blkio.throttle.io_service_bytes_recursive", s.ReadBytes, s.WriteBytes)
	write("blkio.throttle.io_serviced_recursive", s.ReadIOs, s.WriteIOs)
}

// limit returns the write bps file's content ("" when never written).
func (f *burstFixture) limit() string {
	b, _ := os.ReadFile(filepath.Join(f.dir, "blkio.throttle.write_bps_device"))
	return string(b)
}

// blockLimits makes the device's limits unwritable (read_bps_device a
// directory) until the returned func is called.
func (f *burstFixture) blockLimits() (unblock func()) {
	f.t.Helper()
	file := filepath.Join(f.dir, "blkio.throttle.read_bps_device")
	os.Remove(file)
	if err := os.Mkdir(file, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return func() {
		if err := os.Remove(file); err != nil {
			f.t.Fatal(err)
		}
		blkioLimitFiles(f.t, f.dir)
	}
}

func (f *burstFixture) watch(b StartBurst, ends *[]BurstEnd) *BurstWatcher {
	f.t.Helper()
	w, err := f.cg.watchBurst("/pod", 7, 3, DefaultNodeLimits().Rootfs, b, func(e BurstEnd) { *ends = append(*ends, e) }, f.clk)
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

func TestBurstWatcherBytes(t *testing.T) {
	f := newBurstFixture(t)
	// A stale limit from an earlier device 7:3 and I/O before the watch.
	os.WriteFile(filepath.Join(f.dir, "blkio.throttle.write_bps_device"), []byte("7:3 1"), 0o644)
	f.counters(DeviceIOStats{ReadBytes: 5_000_000, ReadIOs: 50})
	var ends []BurstEnd
	b := StartBurst{Bytes: 100_000_000, Ops: 1_000_000, Window: time.Minute}
	w := f.watch(b, &ends)
	defer w.Close()
	if got := f.limit(); got != "7:3 0" {
		t.Fatalf("at the start the device limit is %q, want it removed (7:3 0)", got)
	}
	// Idle: the waits double up to burstMaxPoll's; from there the device
	// is paced, and the waits double up to burstPacedMaxPoll.
	var waits []time.Duration
	for range 9 {
		d, _ := f.clk.fire(t)
		waits = append(waits, d)
		if len(waits) == 5 {
			// Paced for the 500 ms to come: 100 MB left, 50 MB a second
			// each way.
			if got := f.limit(); got != "7:3 100000000" {
				t.Errorf("after 0.31 s idle the limit is %q, want the pace for 0.5 s", got)
			}
		}
	}
	if fmt.Sprint(waits) != "[10ms 20ms 40ms 80ms 160ms 500ms 1s 2s 2s]" {
		t.Errorf("idle waits %v", waits)
	}
	pace := DeviceLimits{ReadBps: 25_000_000, WriteBps: 25_000_000, ReadIOPS: 250_000, WriteIOPS: 250_000}
	if st := w.Status(); !st.Active || st.Pace == nil || *st.Pace != pace {
		t.Fatalf("status %+v: want active, paced at %+v", st, pace)
	}
	if got := readTrim(t, filepath.Join(f.dir, "blkio.throttle.read_iops_device")); got != "7:3 250000" {
		t.Errorf("paced read_iops_device = %q", got)
	}
	// 40 MB under the pace in 2 s: the 60 MB left would last 3 s, under
	// eight paced waits. The pace is lifted and the next look is soon.
	f.counters(DeviceIOStats{ReadBytes: 45_000_000, ReadIOs: 450})
	f.clk.fire(t)
	if st := w.Status(); !st.Active || st.Pace != nil || st.Used.ReadBytes != 40_000_000 || st.Used.ReadIOs != 400 {
		t.Fatalf("status %+v: want active, not paced, 40 MB used", st)
	}
	if got := f.limit(); got != "7:3 0" {
		t.Errorf("the pace was not lifted: %q", got)
	}
	if _, next := f.clk.armed(); next.Sub(f.clk.Now()) != burstMinPoll {
		t.Errorf("next look in %v, want %v after lifting the pace", next.Sub(f.clk.Now()), burstMinPoll)
	}
	// 5 MB in 10 ms at full speed: the 55 MB left last 110 ms.
	f.counters(DeviceIOStats{ReadBytes: 50_000_000, ReadIOs: 500})
	f.clk.fire(t)
	if _, next := f.clk.armed(); next.Sub(f.clk.Now()) != 55*time.Millisecond {
		t.Errorf("next look in %v, want half of the 110 ms the budget lasts", next.Sub(f.clk.Now()))
	}
	if len(ends) != 0 || f.limit() != "7:3 0" {
		t.Fatalf("ended early: %v, limit %q", ends, f.limit())
	}
	f.counters(DeviceIOStats{ReadBytes: 106_000_000, ReadIOs: 1060})
	f.clk.fire(t)
	if got := f.limit(); got != "7:3 6000000" {
		t.Fatalf("after the budget the limit is %q, want R8's", got)
	}
	if len(ends) != 1 || ends[0].Reason != BurstEndBytes || ends[0].Overshoot(b) != 1_000_000 || ends[0].Err != nil {
		t.Fatalf("ends %+v, want one by bytes, 1 MB over", ends)
	}
	if n, _ := f.clk.armed(); n != 0 {
		t.Errorf("%d timers armed after the end", n)
	}
	if _, err := w.counters.Read(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("the counters are still open after the end (read: %v)", err)
	}
	st := w.Status()
	if st.Active || st.End == nil || st.End.Reason != BurstEndBytes || st.Used.ReadBytes != 101_000_000 {
		t.Errorf("status after the end: %+v", st)
	}
	for _, file := range []string{"blkio.throttle.read_bps_device", "blkio.throttle.read_iops_device", "blkio.throttle.write_iops_device"} {
		if got := readTrim(t, filepath.Join(f.dir, file)); got == "7:3 0" {
			t.Errorf("%s not written at the end", file)
		}
	}
}

func TestBurstWatcherOpsAndWindow(t *testing.T) {
	t.Run("ops", func(t *testing.T) {
		f := newBurstFixture(t)
		var ends []BurstEnd
		w := f.watch(StartBurst{Bytes: 1 << 40, Ops: 1000, Window: time.Minute}, &ends)
		defer w.Close()
		f.counters(DeviceIOStats{WriteIOs: 1000, WriteBytes: 4_096_000})
		f.clk.fire(t)
		if len(ends) != 1 || ends[0].Reason != BurstEndOps || f.limit() != "7:3 6000000" {
			t.Fatalf("ends %+v, limit %q", ends, f.limit())
		}
	})
	t.Run("window, idle", func(t *testing.T) {
		f := newBurstFixture(t)
		var ends []BurstEnd
		w := f.watch(StartBurst{Bytes: 1 << 40, Ops: 1 << 40, Window: 10 * time.Second}, &ends)
		defer w.Close()
		looks := 0
		for {
			d, ok := f.clk.fire(t)
			if !ok {
				break
			}
			if d > burstPacedMaxPoll {
				t.Fatalf("waited %v between looks", d)
			}
			looks++
			if st := w.Status(); st.Active && d >= 2*burstMaxPoll && st.Pace == nil {
				t.Fatalf("idle after %v and not paced: %+v", f.clk.Now().Sub(simEpoch), st)
			}
		}
		if elapsed := f.clk.Now().Sub(simEpoch); elapsed != 10*time.Second {
			t.Errorf("ended after %v, want the window", elapsed)
		}
		// The five short waits up to 0.31 s, 0.5 s and 1 s paced, then a
		// look every 2 s: 12 looks (four a second without the pace: 45).
		t.Logf("%d looks in a 10 s idle window", looks)
		if looks > 12 {
			t.Errorf("%d looks in a 10 s window", looks)
		}
		if len(ends) != 1 || ends[0].Reason != BurstEndWindow || ends[0].After != 10*time.Second || f.limit() != "7:3 6000000" {
			t.Fatalf("ends %+v, limit %q", ends, f.limit())
		}
	})
}

func TestBurstWatcherClose(t *testing.T) {
	f := newBurstFixture(t)
	var ends []BurstEnd
	w := f.watch(StartBurst{Bytes: 100, Ops: 100, Window: time.Minute}, &ends)
	f.clk.fire(t)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n, _ := f.clk.armed(); n != 0 {
		t.Errorf("%d timers armed after Close", n)
	}
	if _, err := w.counters.Read(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("the counters are still open after Close (read: %v)", err)
	}
	f.counters(DeviceIOStats{ReadBytes: 1000})
	w.look() // a look already under way when Close ran
	if len(ends) != 0 || f.limit() != "7:3 0" || w.Status().Active {
		t.Errorf("after Close: ends %v, limit %q, status %+v", ends, f.limit(), w.Status())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var nilW *BurstWatcher
	if err := nilW.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBurstWatcherOff(t *testing.T) {
	f := newBurstFixture(t)
	var ends []BurstEnd
	w := f.watch(StartBurst{Bytes: 100, Ops: 100}, &ends) // no window: off
	if f.limit() != "7:3 6000000" {
		t.Errorf("limit %q, want R8's at once", f.limit())
	}
	if st := w.Status(); st.Active || st.End == nil || st.End.Reason != BurstEndOff || st.Budget != (StartBurst{}) {
		t.Errorf("status %+v", st)
	}
	if n, _ := f.clk.armed(); n != 0 || len(ends) != 0 {
		t.Errorf("off: %d timers, ends %v", n, ends)
	}
}

func TestBurstWatcherErrors(t *testing.T) {
	t.Run("no cgroup", func(t *testing.T) {
		f := newBurstFixture(t)
		_, err := f.cg.watchBurst("/missing", 7, 3, DefaultNodeLimits().Rootfs, DefaultStartBurst(), nil, f.clk)
		if err == nil {
			t.Fatal("want an error")
		}
		if n, _ := f.clk.armed(); n != 0 {
			t.Error("a timer was left armed")
		}
		if _, err := f.cg.watchBurst("relative", 7, 3, DeviceLimits{}, DefaultStartBurst(), nil, f.clk); err == nil {
			t.Error("relative path: want an error")
		}
	})
	t.Run("writing the limits fails, then works", func(t *testing.T) {
		f := newBurstFixture(t)
		var ends []BurstEnd
		w := f.watch(StartBurst{Bytes: 10, Ops: 10, Window: time.Minute}, &ends)
		defer w.Close()
		unblock := f.blockLimits()
		f.counters(DeviceIOStats{ReadBytes: 100})
		f.clk.fire(t)
		if len(ends) != 0 {
			t.Fatalf("ended on the first failed write: %+v", ends)
		}
		unblock()
		if d, _ := f.clk.fire(t); d != burstMaxPoll {
			t.Errorf("retried after %v", d)
		}
		if len(ends) != 1 || ends[0].Reason != BurstEndBytes || f.limit() != "7:3 6000000" {
			t.Fatalf("ends %+v, limit %q", ends, f.limit())
		}
	})
	t.Run("writing the limits keeps failing", func(t *testing.T) {
		f := newBurstFixture(t)
		var ends []BurstEnd
		w := f.watch(StartBurst{Bytes: 10, Ops: 10, Window: time.Minute}, &ends)
		defer w.Close()
		f.blockLimits() // for good
		f.counters(DeviceIOStats{ReadBytes: 100})
		for range maxApplyFailures {
			f.clk.fire(t)
		}
		if len(ends) != 1 || ends[0].Reason != BurstEndError || ends[0].Err == nil {
			t.Fatalf("ends %+v", ends)
		}
		if n, _ := f.clk.armed(); n != 0 {
			t.Error("a timer was left armed")
		}
	})
}

func TestStatsV1Fallback(t *testing.T) {
	// Kernels without the _recursive throttle files.
	root := t.TempDir()
	dir := filepath.Join(root, "blkio", "pod")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "blkio.throttle.io_service_bytes"), []byte("7:3 Read 10\n7:3 Write 20\n7:30 Read 99\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "blkio.throttle.io_serviced"), []byte("7:3 Read 1\n7:3 Write 2\nTotal 3\n"), 0o644)
	s, err := cgroupFS{root: root}.stats("/pod", 7, 3)
	if err != nil || s != (DeviceIOStats{ReadBytes: 10, WriteBytes: 20, ReadIOs: 1, WriteIOs: 2}) {
		t.Errorf("stats = %+v, %v", s, err)
	}
}

// TestWatchBurstLoopDevice runs a start burst on a real loop device in a
// fresh blkio cgroup (cgroup v1 hosts): a process in the cgroup writes 6
// MiB with direct I/O, over the 4 MiB budget, so the watcher writes R8's
// limits; 2 MiB more are written under them. It checks the mechanism
// (no limit during the burst, R8's after it, every byte counted), not the
// rates: `ccibench burst` measures those. (A loop device on the page cache
// writes 6 MiB faster than the watcher's 10 ms first look, so the test
// waits for the end instead of racing dd.)
func TestWatchBurstLoopDevice(t *testing.T) {
	testutil.RequireRoot(t, "loop devices, cgroups")
	d, path := loopInBlkioCgroup(t, "cci-iothrottle-burst-test")
	dir := "/sys/fs/cgroup/blkio" + path
	dev := fmt.Sprintf("%d:%d", d.Major, d.Minor)
	// A stale limit on the device number, as an earlier container's.
	if err := ApplyToCgroup(path, d.Major, d.Minor, DeviceLimits{WriteBps: 1000}); err != nil {
		t.Fatal(err)
	}

	limits := DefaultNodeLimits().Rootfs
	budget := StartBurst{Bytes: 4 << 20, Ops: 1 << 30, Window: time.Minute}
	ended := make(chan BurstEnd, 1)
	w, err := WatchBurst(path, d.Major, d.Minor, limits, budget, func(e BurstEnd) { ended <- e })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := readTrim(t, filepath.Join(dir, "blkio.throttle.write_bps_device")); got != "" {
		t.Fatalf("during the burst write_bps_device = %q, want no limit", got)
	}
	dd := func(skip, count int) {
		t.Helper()
		cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec dd if=/dev/zero of="$2" bs=1048576 seek=$3 count=$4 oflag=direct status=none`,
			"sh", dir, d.Path, fmt.Sprint(skip), fmt.Sprint(count))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dd: %v: %s", err, out)
		}
	}
	dd(0, 6)
	var e BurstEnd
	select {
	case e = <-ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("the burst did not end; status %+v", w.Status())
	}
	// The watcher may look while dd still writes (a look lands between two
	// of its 1 MiB writes when the machine is busy): then it saw at least
	// the budget, not yet all 6 MiB.
	if e.Reason != BurstEndBytes || e.Err != nil || e.Used.WriteBytes < budget.Bytes || e.Used.WriteBytes > 6<<20 {
		t.Fatalf("end %+v: want the byte budget (%d B) spent, with at most the 6 MiB written", e, budget.Bytes)
	}
	t.Logf("burst ended after %v with %d B written (%d B over the budget)", e.After.Round(time.Millisecond), e.Used.WriteBytes, e.Overshoot(budget))
	for file, want := range map[string]string{
		"blkio.throttle.write_bps_device": dev + " 6000000", "blkio.throttle.read_bps_device": dev + " 6000000",
		"blkio.throttle.write_iops_device": dev + " 1000", "blkio.throttle.read_iops_device": dev + " 1000",
	} {
		if got := readTrim(t, filepath.Join(dir, file)); got != want {
			t.Errorf("after the burst %s = %q, want %q", file, got, want)
		}
	}
	dd(6, 2) // throttled now: ~0.35 s
	s, err := DeviceStats(path, d.Major, d.Minor)
	if err != nil || s.WriteBytes != 8<<20 {
		t.Errorf("device stats %+v, %v: want all 8 MiB counted", s, err)
	}
	if st := w.Status(); st.Active || st.End == nil {
		t.Errorf("status %+v", st)
	}
}

// TestWatchBurstPaceLoopDevice runs a start burst on a real loop device
// that idles first (cgroup v1 hosts): the kernel takes the pace, holds a
// write to it, and the watcher lifts it, then ends the burst with R8's
// limits once the rest of the budget is written at full speed.
func TestWatchBurstPaceLoopDevice(t *testing.T) {
	testutil.RequireRoot(t, "loop devices, cgroups")
	d, path := loopInBlkioCgroup(t, "cci-iothrottle-pace-test")
	dir := "/sys/fs/cgroup/blkio" + path
	dev := fmt.Sprintf("%d:%d", d.Major, d.Minor)
	budget := StartBurst{Bytes: 32 << 20, Ops: 1 << 30, Window: time.Minute}
	ended := make(chan BurstEnd, 1)
	w, err := WatchBurst(path, d.Major, d.Minor, DefaultNodeLimits().Rootfs, budget, func(e BurstEnd) { ended <- e })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dd := func(skip, count int) time.Duration {
		t.Helper()
		began := time.Now()
		cmd := exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec dd if=/dev/zero of="$2" bs=1048576 seek=$3 count=$4 oflag=direct status=none`,
			"sh", dir, d.Path, fmt.Sprint(skip), fmt.Sprint(count))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dd: %v: %s", err, out)
		}
		return time.Since(began)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 10 s; status %+v", what, w.Status())
			}
		}
	}
	// Idle: paced for 2 s waits, 32 MiB over 4 s each way.
	pace := fmt.Sprintf("%s %d", dev, (32<<20)/4)
	waitFor("paced", func() bool { return readTrim(t, filepath.Join(dir, "blkio.throttle.write_bps_device")) == pace })
	took := dd(0, 12)
	rate := float64(12<<20) / took.Seconds()
	t.Logf("12 MiB under the pace of %s B/s: %v (%.0f B/s)", pace, took.Round(time.Millisecond), rate)
	if rate > 2*float64((32<<20)/4) {
		t.Errorf("12 MiB written at %.0f B/s under a pace of %s", rate, pace)
	}
	waitFor("the pace lifted", func() bool {
		return w.Status().Pace == nil && readTrim(t, filepath.Join(dir, "blkio.throttle.write_bps_device")) == ""
	})
	dd(12, 24)
	select {
	case e := <-ended:
		if e.Reason != BurstEndBytes || e.Err != nil {
			t.Fatalf("end %+v: want the byte budget spent", e)
		}
		t.Logf("burst ended after %v with %d B written (%d B over the budget)", e.After.Round(time.Millisecond), e.Used.WriteBytes, e.Overshoot(budget))
	case <-time.After(10 * time.Second):
		t.Fatalf("the burst did not end; status %+v", w.Status())
	}
	if got := readTrim(t, filepath.Join(dir, "blkio.throttle.write_bps_device")); got != dev+" 6000000" {
		t.Errorf("after the burst write_bps_device = %q, want R8's", got)
	}
}

// TestWatchBurstCgroupRemoved removes a real blkio cgroup during its burst,
// as a container that exits and is deleted early: the watcher's next look
// reads ENODEV through its open counters and ends the burst with an error,
// leaving no timer behind.
func TestWatchBurstCgroupRemoved(t *testing.T) {
	testutil.RequireRoot(t, "loop devices, cgroups")
	d, path := loopInBlkioCgroup(t, "cci-iothrottle-burst-gone-test")
	ended := make(chan BurstEnd, 1)
	w, err := WatchBurst(path, d.Major, d.Minor, DefaultNodeLimits().Rootfs, DefaultStartBurst(), func(e BurstEnd) { ended <- e })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Remove("/sys/fs/cgroup/blkio" + path); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-ended:
		if e.Reason != BurstEndError || !errors.Is(e.Err, unix.ENODEV) {
			t.Fatalf("end %+v: want an error ending on ENODEV", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the burst did not end; status %+v", w.Status())
	}
	if st := w.Status(); st.Active || st.End == nil {
		t.Errorf("status %+v", st)
	}
}

// TestBurstWatcherPace: a trickle of I/O under the pace keeps the device
// paced, at a pace rewritten for what is left; a pace that cannot be
// written leaves the device watched as closely as without one, and a pace
// that cannot be lifted is tried again at the next look.
func TestBurstWatcherPace(t *testing.T) {
	idle := func(t *testing.T, f *burstFixture) {
		t.Helper()
		for f.clk.Now().Sub(simEpoch) < 2*time.Second {
			f.clk.fire(t)
		}
	}
	b := StartBurst{Bytes: 100_000_000, Ops: 1_000_000, Window: time.Minute}
	t.Run("trickle", func(t *testing.T) {
		f := newBurstFixture(t)
		var ends []BurstEnd
		w := f.watch(b, &ends)
		defer w.Close()
		idle(t, f)
		if got := f.limit(); got != "7:3 25000000" {
			t.Fatalf("idle: limit %q, want the 2 s pace", got)
		}
		// 1 MB in 2 s: 99 MB left, paced for them.
		f.counters(DeviceIOStats{WriteBytes: 1_000_000, WriteIOs: 10})
		if d, _ := f.clk.fire(t); d != burstPacedMaxPoll {
			t.Fatalf("waited %v", d)
		}
		if got := f.limit(); got != "7:3 24750000" {
			t.Errorf("after a trickle: limit %q, want the pace for the 99 MB left", got)
		}
		if d, _ := f.clk.fire(t); d != burstPacedMaxPoll || len(ends) != 0 {
			t.Errorf("after a trickle: waited %v, ends %v", d, ends)
		}
	})
	t.Run("the pace cannot be written", func(t *testing.T) {
		f := newBurstFixture(t)
		var ends []BurstEnd
		w := f.watch(b, &ends)
		defer w.Close()
		unblock := f.blockLimits()
		for range 8 {
			if d, _ := f.clk.fire(t); d > burstMaxPoll {
				t.Fatalf("waited %v with no pace written", d)
			}
		}
		if st := w.Status(); !st.Active || st.Pace != nil {
			t.Errorf("status %+v: want active and not paced", st)
		}
		unblock()
		f.clk.fire(t)
		if st := w.Status(); st.Pace == nil {
			t.Errorf("status %+v: want paced once the pace can be written", st)
		}
	})
	t.Run("the pace cannot be lifted", func(t *testing.T) {
		f := newBurstFixture(t)
		var ends []BurstEnd
		w := f.watch(b, &ends)
		defer w.Close()
		idle(t, f)
		unblock := f.blockLimits()
		f.counters(DeviceIOStats{ReadBytes: 40_000_000, ReadIOs: 400}) // busy under the pace
		f.clk.fire(t)
		if st := w.Status(); st.Pace == nil {
			t.Errorf("status %+v: the pace could not be lifted, want it reported", st)
		}
		unblock()
		f.counters(DeviceIOStats{ReadBytes: 41_000_000, ReadIOs: 410})
		if d, _ := f.clk.fire(t); d != burstMinPoll {
			t.Errorf("retried after %v, want %v", d, burstMinPoll)
		}
		if st := w.Status(); st.Pace != nil || f.limit() != "7:3 0" {
			t.Errorf("status %+v, limit %q: want the pace lifted", st, f.limit())
		}
	})
}
