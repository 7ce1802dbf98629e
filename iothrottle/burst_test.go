package iothrottle

import (
	"strings"
	"testing"
	"time"
)

func TestStartBurstAnnotations(t *testing.T) {
	node := DefaultNodeLimits()
	def := node.RootfsBurst
	tests := []struct {
		name    string
		node    StartBurst
		ann     map[string]string
		want    StartBurst
		wantErr []string
	}{
		{name: "node default", node: def, want: def},
		{name: "lower bytes", node: def, ann: map[string]string{AnnotationRootfsBurstBytes: "100000000"},
			want: StartBurst{Bytes: 100_000_000, Ops: def.Ops, Window: def.Window}},
		{name: "lower all three", node: def, ann: map[string]string{AnnotationRootfsBurstBytes: "5", AnnotationRootfsBurstOps: " 6 ", AnnotationRootfsBurstSeconds: "7"},
			want: StartBurst{Bytes: 5, Ops: 6, Window: 7 * time.Second}},
		{name: "0 turns it off", node: def, ann: map[string]string{AnnotationRootfsBurstSeconds: "0"}, want: StartBurst{}},
		{name: "off and another lowered: off", node: def, ann: map[string]string{AnnotationRootfsBurstBytes: "0", AnnotationRootfsBurstOps: "50"}, want: StartBurst{}},
		{name: "raise bytes refused", node: def, ann: map[string]string{AnnotationRootfsBurstBytes: "1000000001"},
			wantErr: []string{AnnotationRootfsBurstBytes, "1000000001", "0 to 1000000000", "only be lowered"}},
		{name: "raise window refused", node: def, ann: map[string]string{AnnotationRootfsBurstSeconds: "61"},
			wantErr: []string{AnnotationRootfsBurstSeconds, "0 to 60"}},
		{name: "negative refused", node: def, ann: map[string]string{AnnotationRootfsBurstOps: "-1"},
			wantErr: []string{AnnotationRootfsBurstOps, "integer >= 0"}},
		{name: "node off: any positive value refused", node: StartBurst{Bytes: 10, Ops: 10},
			ann: map[string]string{AnnotationRootfsBurstBytes: "5"}, wantErr: []string{AnnotationRootfsBurstBytes, "0 to 0"}},
		{name: "node off: 0 allowed", node: StartBurst{}, ann: map[string]string{AnnotationRootfsBurstBytes: "0"}, want: StartBurst{}},
		{name: "node window too long", node: StartBurst{Bytes: 1, Ops: 1, Window: 25 * time.Hour}, wantErr: []string{"window"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node
			n.RootfsBurst = tt.node
			got, err := LimitsFromConfig(n, tt.ann)
			if tt.wantErr == nil {
				if err != nil || got.RootfsBurst != tt.want || got.Rootfs != node.Rootfs {
					t.Fatalf("got %+v, %v; want burst %+v", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, want an error", got)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestStartBurstFromConfig(t *testing.T) {
	b, err := StartBurstFromConfig(1, 2, 3)
	if err != nil || b != (StartBurst{Bytes: 1, Ops: 2, Window: 3 * time.Second}) || !b.Enabled() {
		t.Fatalf("got %+v, %v", b, err)
	}
	if _, err := StartBurstFromConfig(1, 2, 86401); err == nil || !strings.Contains(err.Error(), "rootfs_burst_seconds") {
		t.Fatalf("window over a day: %v", err)
	}
	if b, _ := StartBurstFromConfig(1, 0, 3); b.Enabled() {
		t.Error("ops 0: want off")
	}
}

func TestNextBurstPoll(t *testing.T) {
	b := StartBurst{Bytes: 100_000_000, Ops: 10_000, Window: time.Minute}
	mb := func(n uint64) DeviceIOStats { return DeviceIOStats{ReadBytes: n * 1_000_000} }
	tests := []struct {
		name        string
		prev        time.Duration
		used, delta DeviceIOStats
		dt          time.Duration
		want        time.Duration
	}{
		{name: "idle doubles", prev: 10 * time.Millisecond, dt: 10 * time.Millisecond, want: 20 * time.Millisecond},
		{name: "idle caps at max", prev: 200 * time.Millisecond, dt: 200 * time.Millisecond, want: burstMaxPoll},
		// 10 MB in 100 ms = 100 MB/s; 50 MB left last 500 ms: half of
		// that is over the cap.
		{name: "far from the end: max", prev: 100 * time.Millisecond, used: mb(50), delta: mb(10), dt: 100 * time.Millisecond, want: burstMaxPoll},
		// 10 MB left at 100 MB/s last 100 ms: look again in 50.
		{name: "near the end: half the time left", prev: 100 * time.Millisecond, used: mb(90), delta: mb(10), dt: 100 * time.Millisecond, want: 50 * time.Millisecond},
		{name: "at the end: min", prev: 100 * time.Millisecond, used: mb(100), delta: mb(10), dt: 100 * time.Millisecond, want: burstMinPoll},
		// Ops run out first: 9,900 of 10,000 used, 1,000 per 100 ms.
		{name: "ops decide", prev: 100 * time.Millisecond, used: DeviceIOStats{WriteIOs: 9_900, WriteBytes: 1}, delta: DeviceIOStats{WriteIOs: 1_000, WriteBytes: 1},
			dt: 100 * time.Millisecond, want: burstMinPoll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextBurstPoll(tt.prev, b, tt.used, tt.delta, tt.dt); got != tt.want {
				t.Errorf("nextBurstPoll = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBurstSpentAndOvershoot(t *testing.T) {
	b := StartBurst{Bytes: 1000, Ops: 10, Window: time.Second}
	for _, c := range []struct {
		used    DeviceIOStats
		elapsed time.Duration
		want    string
		over    uint64
	}{
		{DeviceIOStats{ReadBytes: 500, WriteBytes: 499, ReadIOs: 9}, 0, "", 0},
		{DeviceIOStats{ReadBytes: 500, WriteBytes: 600}, 0, BurstEndBytes, 100},
		{DeviceIOStats{ReadIOs: 4, WriteIOs: 7}, 0, BurstEndOps, 1},
		{DeviceIOStats{}, time.Second, BurstEndWindow, 0},
	} {
		got := burstSpent(b, c.used, c.elapsed)
		if got != c.want {
			t.Errorf("burstSpent(%+v, %v) = %q, want %q", c.used, c.elapsed, got, c.want)
		}
		if o := (BurstEnd{Reason: got, Used: c.used}).Overshoot(b); o != c.over {
			t.Errorf("overshoot of %+v = %d, want %d", c.used, o, c.over)
		}
	}
	if s := (DeviceIOStats{ReadBytes: 5, WriteIOs: 1}).since(DeviceIOStats{ReadBytes: 7}); s != (DeviceIOStats{WriteIOs: 1}) {
		t.Errorf("since with a counter gone backwards = %+v", s)
	}
}

func TestKataDiskBurstConfig(t *testing.T) {
	if got, want := KataDiskBurstConfig(DefaultStartBurst()),
		"disk_rate_limiter_bw_one_time_burst = 8000000000\ndisk_rate_limiter_ops_one_time_burst = 100000\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := KataDiskBurstConfig(StartBurst{Bytes: 5}),
		"disk_rate_limiter_bw_one_time_burst = 0\ndisk_rate_limiter_ops_one_time_burst = 0\n"; got != want {
		t.Errorf("off: got %q, want %q", got, want)
	}
}

func TestPacedBurstWait(t *testing.T) {
	b := StartBurst{Bytes: 1_000_000_000, Ops: 100_000, Window: time.Minute}
	mb := func(n uint64) DeviceIOStats { return DeviceIOStats{ReadBytes: n * 1_000_000} }
	for _, tt := range []struct {
		name        string
		prev        time.Duration
		used, delta DeviceIOStats
		dt          time.Duration
		want        time.Duration
	}{
		{name: "idle after a short wait: twice burstMaxPoll", prev: 160 * time.Millisecond, dt: 160 * time.Millisecond, want: 500 * time.Millisecond},
		{name: "idle doubles", prev: time.Second, dt: time.Second, want: 2 * time.Second},
		{name: "idle caps", prev: 2 * time.Second, dt: 2 * time.Second, want: burstPacedMaxPoll},
		// 1 MB/s: 999 MB left last 999 s, far over eight waits.
		{name: "a trickle stays paced", prev: 2 * time.Second, used: mb(1), delta: mb(2), dt: 2 * time.Second, want: burstPacedMaxPoll},
		// 100 MB/s: 800 MB left last 8 s; a wait may be 1 s.
		{name: "a steady rate shortens the wait", prev: 2 * time.Second, used: mb(200), delta: mb(200), dt: 2 * time.Second, want: time.Second},
		// 250 MB/s, the pace itself: 500 MB left last 2 s.
		{name: "at the pace: lifted", prev: 2 * time.Second, used: mb(500), delta: mb(500), dt: 2 * time.Second, want: 0},
		{name: "ops decide", prev: 2 * time.Second, used: DeviceIOStats{WriteIOs: 50_000}, delta: DeviceIOStats{WriteIOs: 50_000}, dt: 2 * time.Second, want: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := pacedBurstWait(tt.prev, b, tt.used, tt.delta, tt.dt); got != tt.want {
				t.Errorf("pacedBurstWait = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBurstPace(t *testing.T) {
	b := StartBurst{Bytes: 1_000_000_000, Ops: 100_000, Window: time.Minute}
	r8 := DefaultNodeLimits().Rootfs
	// 1 GB and 100,000 operations over 2 s, half each way.
	if got, want := burstPace(b, DeviceIOStats{}, 2*time.Second, r8),
		(DeviceLimits{ReadBps: 250_000_000, WriteBps: 250_000_000, ReadIOPS: 25_000, WriteIOPS: 25_000}); got != want {
		t.Errorf("pace = %+v, want %+v", got, want)
	}
	// What is used counts both ways: 996 MB and 99,000 operations used.
	used := DeviceIOStats{ReadBytes: 990_000_000, WriteBytes: 6_000_000, ReadIOs: 90_000, WriteIOs: 9_000}
	got := burstPace(b, used, 2*time.Second, r8)
	if want := (DeviceLimits{ReadBps: r8.ReadBps, WriteBps: r8.WriteBps, ReadIOPS: r8.ReadIOPS, WriteIOPS: r8.WriteIOPS}); got != want {
		t.Errorf("near the end the pace = %+v, want R8's %+v (never below)", got, want)
	}
	// A direction R8 leaves unlimited is not paced.
	if got := burstPace(b, DeviceIOStats{}, time.Second, DeviceLimits{WriteBps: 1}); got != (DeviceLimits{WriteBps: 500_000_000}) {
		t.Errorf("pace with only a write limit = %+v", got)
	}
	// Spent: the pace is R8's (the next look ends the burst).
	if got := burstPace(b, DeviceIOStats{ReadBytes: 2_000_000_000, ReadIOs: 200_000}, time.Second, r8); got != r8 {
		t.Errorf("pace of a spent budget = %+v, want %+v", got, r8)
	}
}
