//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/containerd/api/types"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/iothrottle"
)

// BurstOptions configures the burst bench.
type BurstOptions struct {
	// MiB is the byte budget of the bandwidth phases (1 MiB blocks).
	// Default 64.
	MiB int
	// Ops is the operation budget of the IOPS phase (4 KiB blocks).
	// Default 20000.
	Ops int
	// Sustain is how long each phase runs under R8's limits after its
	// budget is spent (the volume is sized for it). Default 11 s.
	Sustain time.Duration
}

func (o BurstOptions) withDefaults() BurstOptions {
	if o.MiB <= 0 {
		o.MiB = 64
	}
	if o.Ops <= 0 {
		o.Ops = 20000
	}
	if o.Sustain <= 0 {
		o.Sustain = 11 * time.Second
	}
	return o
}

// TimePoint is the device's I/O in the phase's cgroup at T seconds after
// the watch began.
type TimePoint struct {
	T     float64 `json:"t"`
	Bytes uint64  `json:"bytes"`
	Ops   uint64  `json:"ops"`
}

// BurstPhase is one dd run through a start burst and on under the limits.
type BurstPhase struct {
	Name   string                `json:"name"`
	Op     string                `json:"op"` // "read" or "write"
	Block  int                   `json:"blockBytes"`
	Count  int                   `json:"count"` // dd's blocks
	Budget iothrottle.StartBurst `json:"budget"`
	// Limit is R8's limit that matters for the phase: B/s for 1 MiB
	// blocks, IOPS for 4 KiB blocks.
	Limit float64 `json:"limit"`
	Unit  string  `json:"unit"` // "B/s" or "IOPS"
	// End is how the burst ended; Overshoot is what passed beyond the
	// budget before the limits were written (bytes or operations).
	End       iothrottle.BurstEnd `json:"end"`
	Overshoot uint64              `json:"overshoot"`
	// BurstRate is the rate from dd's start to the switch; Sustained the
	// rate from the first sample after the switch to dd's end, over
	// SustainedSeconds, in Unit.
	BurstRate        float64 `json:"burstRate"`
	Sustained        float64 `json:"sustained"`
	SustainedSeconds float64 `json:"sustainedSeconds"`
	// Timeline is the cgroup's counters every 20 ms.
	Timeline []TimePoint `json:"timeline"`
}

// BurstResult is the burst bench's result.
type BurstResult struct {
	Device string                  `json:"device"`
	Limits iothrottle.DeviceLimits `json:"limits"`
	Phases []BurstPhase            `json:"phases"`
}

// Burst phase names.
const (
	BurstWrite1M = "write 1MiB direct"
	BurstRead1M  = "read 1MiB direct"
	BurstWrite4K = "write 4KiB direct"
)

const burstSampleEvery = 20 * time.Millisecond

// RunBurst measures iothrottle's start burst on this host, without
// containerd: a loop device over a sparse file, a blkio cgroup per phase,
// WatchBurst with R8's default limits, and the host's dd in
// the cgroup doing direct I/O through the budget and on for o.Sustain
// under the limits. It needs root and a cgroup v1 blkio hierarchy. say
// gets progress lines. Everything it creates is removed before it returns.
func RunBurst(ctx context.Context, o BurstOptions, say func(string)) (res *BurstResult, err error) {
	o = o.withDefaults()
	if cgroups.Mode() == cgroups.Unified {
		return nil, errors.New("burst: needs a cgroup v1 blkio hierarchy (this host is cgroup v2 only; iothrottle writes io.max there, covered by its fixture tests)")
	}
	dir, err := os.MkdirTemp("", "ccibench-burst-")
	if err != nil {
		return nil, fmt.Errorf("burst: %w", err)
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "rootfs.img")
	size := int64(5*o.MiB+64)<<20 + int64(5*o.Ops+1000)*4096 + 2*6_000_000*int64(o.Sustain/time.Second+1)
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("burst: creating the device's file: %w", err)
	}
	dev, err := iothrottle.RootfsDevice([]*types.Mount{{Type: "ext4", Source: img, Options: []string{"loop", "rw"}}})
	if err != nil {
		return nil, fmt.Errorf("burst: %w", err)
	}
	defer dev.Close()
	limits := iothrottle.DefaultNodeLimits().Rootfs
	res = &BurstResult{Device: fmt.Sprintf("%d:%d (%s over a sparse file)", dev.Major, dev.Minor, dev.Path), Limits: limits}
	// dd is stopped o.Sustain after the switch; its count only has to
	// outlast the budget, the polling's overshoot and the sustained part.
	sustainBytes := 4*o.MiB + int(float64(limits.WriteBps)*o.Sustain.Seconds()/(1<<20)) + 16
	sustainOps := 4*o.Ops + int(float64(limits.WriteIOPS)*o.Sustain.Seconds()) + 1000
	window := 10 * time.Minute // the budgets end these phases
	phases := []BurstPhase{
		{Name: BurstWrite1M, Op: "write", Block: 1 << 20, Count: o.MiB + sustainBytes,
			Budget: iothrottle.StartBurst{Bytes: uint64(o.MiB) << 20, Ops: 1 << 40, Window: window}, Limit: float64(limits.WriteBps), Unit: "B/s"},
		{Name: BurstRead1M, Op: "read", Block: 1 << 20, Count: o.MiB + sustainBytes,
			Budget: iothrottle.StartBurst{Bytes: uint64(o.MiB) << 20, Ops: 1 << 40, Window: window}, Limit: float64(limits.ReadBps), Unit: "B/s"},
		{Name: BurstWrite4K, Op: "write", Block: 4096, Count: o.Ops + sustainOps,
			Budget: iothrottle.StartBurst{Bytes: 1 << 50, Ops: uint64(o.Ops), Window: window}, Limit: float64(limits.WriteIOPS), Unit: "IOPS"},
	}
	for i := range phases {
		p := &phases[i]
		prog := &progressLine{say: say, name: "burst"}
		prog.done("%s: %d x %d B through a budget of %s, then ~%v at R8", p.Name, p.Count, p.Block, budgetText(p.Budget), o.Sustain)
		if err := burstPhase(ctx, dev, limits, p, i, o.Sustain); err != nil {
			return res, fmt.Errorf("burst: %s: %w", p.Name, err)
		}
		prog.done("%s: burst ended by %s after %.2f s, %s over; then %.0f %s for %.1f s (%+.2f%% of %.0f)", p.Name, p.End.Reason,
			p.End.After.Seconds(), overshootText(*p), p.Sustained, p.Unit, p.SustainedSeconds, (p.Sustained/p.Limit-1)*100, p.Limit)
		res.Phases = append(res.Phases, *p)
	}
	return res, nil
}

func budgetText(b iothrottle.StartBurst) string {
	if b.Bytes < 1<<40 {
		return fmt.Sprintf("%d MiB", b.Bytes>>20)
	}
	return fmt.Sprintf("%d ops", b.Ops)
}

func overshootText(p BurstPhase) string {
	if p.Unit == "IOPS" {
		return fmt.Sprintf("%d ops", p.Overshoot)
	}
	return fmt.Sprintf("%.1f MiB", float64(p.Overshoot)/(1<<20))
}

// burstPhase runs one phase in a fresh blkio cgroup.
func burstPhase(ctx context.Context, dev *iothrottle.BlockDevice, limits iothrottle.DeviceLimits, p *BurstPhase, n int, sustain time.Duration) error {
	path := fmt.Sprintf("/ccibench-burst-%d-%d", os.Getpid(), n)
	blkioOnly := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{cgroup1.NewBlkio("/sys/fs/cgroup")}, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(path), &specs.LinuxResources{}, cgroup1.WithHierarchy(blkioOnly))
	if err != nil {
		return fmt.Errorf("creating blkio cgroup %s: %w", path, err)
	}
	defer cg.Delete()

	ended := make(chan struct{})
	w, err := iothrottle.WatchBurst(path, dev.Major, dev.Minor, limits, p.Budget, func(iothrottle.BurstEnd) { close(ended) })
	if err != nil {
		return err
	}
	defer w.Close()
	began := time.Now()

	// The sampler: the cgroup's counters every 20 ms until dd ends.
	var (
		mu   sync.Mutex
		tl   []TimePoint
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		s, err := iothrottle.DeviceStats(path, dev.Major, dev.Minor)
		if err != nil {
			return
		}
		mu.Lock()
		tl = append(tl, TimePoint{T: time.Since(began).Seconds(), Bytes: s.ReadBytes + s.WriteBytes, Ops: s.ReadIOs + s.WriteIOs})
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(burstSampleEvery)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()

	dd := fmt.Sprintf("dd if=/dev/zero of=%s bs=%d count=%d oflag=direct status=none", dev.Path, p.Block, p.Count)
	if p.Op == "read" {
		dd = fmt.Sprintf("dd if=%s of=/dev/null bs=%d count=%d iflag=direct status=none", dev.Path, p.Block, p.Count)
	}
	dir := "/sys/fs/cgroup/blkio" + path
	cmd := exec.CommandContext(ctx, "sh", "-c", `echo $$ > "$1/cgroup.procs" && exec `+dd, "sh", dir)
	cmd.WaitDelay = time.Second
	ddStart := time.Since(began).Seconds()
	done := make(chan error, 1)
	go func() { out, err := cmd.CombinedOutput(); done <- wrapOut(err, out) }()
	var runErr error
	finished := false
	// The budget first (at full speed: a minute is plenty), then sustain
	// under the limits; dd is stopped then, so the overshoot of the
	// polling does not shorten the measured time.
	select {
	case runErr = <-done:
		finished = true
	case <-ended:
		select {
		case runErr = <-done:
			finished = true
		case <-time.After(sustain):
		case <-ctx.Done():
		}
	case <-time.After(time.Minute):
	case <-ctx.Done():
	}
	close(stop)
	wg.Wait()
	sample()
	if !finished {
		cmd.Process.Kill()
		<-done
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if finished && runErr != nil {
		return fmt.Errorf("dd: %w", runErr)
	}
	select {
	case <-ended:
	default:
		return fmt.Errorf("the burst did not end within a minute or before dd did: %+v", w.Status())
	}
	st := w.Status()
	p.End, p.Overshoot, p.Timeline = *st.End, st.End.Overshoot(p.Budget), tl
	return p.rates(ddStart)
}

// rates computes the burst and sustained rates from the timeline: the
// first sample at or after the switch splits the two; the last sample,
// taken while dd still ran, ends the sustained part.
func (p *BurstPhase) rates(ddStart float64) error {
	sw := p.End.After.Seconds()
	var at *TimePoint
	for i := range p.Timeline {
		if p.Timeline[i].T >= sw {
			at = &p.Timeline[i]
			break
		}
	}
	last := p.Timeline[len(p.Timeline)-1]
	if at == nil || last.T <= at.T {
		return fmt.Errorf("no samples after the switch at %.3f s", sw)
	}
	first := p.Timeline[0]
	value := func(tp TimePoint) float64 {
		if p.Unit == "IOPS" {
			return float64(tp.Ops)
		}
		return float64(tp.Bytes)
	}
	if sw > ddStart {
		p.BurstRate = (value(*at) - value(first)) / (at.T - ddStart)
	}
	p.SustainedSeconds = last.T - at.T
	p.Sustained = (value(last) - value(*at)) / p.SustainedSeconds
	return nil
}

func wrapOut(err error, out []byte) error {
	if err != nil && len(out) > 0 {
		return fmt.Errorf("%w: %s", err, out)
	}
	return err
}
