//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// StartOptions configures the start-latency bench.
type StartOptions struct {
	// N is the number of starts per configuration. Default 10.
	N int
}

// StartSeries is the start latency of one configuration.
type StartSeries struct {
	Name     string   `json:"name"`
	Runtime  string   `json:"runtime"`
	Throttle Throttle `json:"throttle"`
	// Seccomp: ctr run --seccomp, the runtime's default profile, which the
	// cci policy gives every container of a runc-backend pod (there
	// narrowed to the native syscall ABI).
	Seccomp bool `json:"seccomp,omitempty"`
	// Skipped says why the series did not run.
	Skipped string `json:"skipped,omitempty"`
	// Seconds are the wall times of `ctr run --rm <image> <id> true`, in
	// run order.
	Seconds []float64 `json:"seconds"`
	Median  float64   `json:"median"`
	P90     float64   `json:"p90"`
}

// StartResult is the start-latency bench's result.
type StartResult struct {
	N      int           `json:"n"`
	Series []StartSeries `json:"series"`
	// BusyboxBytes is the size of the image's only binary, which `true`
	// reads from the rootfs through the read throttle.
	BusyboxBytes int64 `json:"busyboxBytes"`
	// ReadBps is the default rootfs read throttle.
	ReadBps uint64 `json:"readBps"`
}

// Start-latency configurations.
const (
	StartRunc        = "runc (baseline)"
	StartRuncSeccomp = "runc + default seccomp"
	StartCCIOff      = "cci, throttles off"
	StartCCIDefaults = "cci, default node config"
	StartCCINoBurst  = "cci, default throttles, no burst"
	StartCCIBurst    = "cci, default throttles + start burst"
)

// Start measures pod start latency: `ctr run --rm ... true` (create,
// start, wait, delete) through runc, as is and with the runtime's default
// seccomp profile (which the cci policy gives every container of a
// runc-backend pod, narrowed to the native syscall ABI: runc compiles one
// filter instead of three), through cci with every throttle off, with the
// default node config, and, when this build has the start burst,
// with the default throttles without and with the burst (the default
// burst budget), interleaved so that the machine's load hits every series
// alike. Without a burst, busybox's first read of its own binary goes
// through the rootfs read throttle. It leaves the node config at the
// defaults.
func (b *Bench) Start(ctx context.Context, o StartOptions) (*StartResult, error) {
	if o.N <= 0 {
		o.N = 10
	}
	defer b.SetThrottle(Defaults())
	series := []StartSeries{
		{Name: StartRunc, Runtime: Runc},
		{Name: StartRuncSeccomp, Runtime: Runc, Seccomp: true},
		{Name: StartCCIOff, Runtime: CCI, Throttle: Off},
		{Name: StartCCIDefaults, Runtime: CCI, Throttle: Defaults()},
	}
	series = append(series, StartSeries{Name: StartCCINoBurst, Runtime: CCI, Throttle: NoBurst(Defaults())},
		StartSeries{Name: StartCCIBurst, Runtime: CCI, Throttle: Defaults()})
	prog := b.progress("start")
	// One unmeasured start per runtime warms the page cache with the shim
	// and runtime binaries.
	for _, rt := range []string{Runc, CCI} {
		if _, err := b.run(ctx, container{runtime: rt, id: b.newID("warm"), args: []string{"true"}}); err != nil {
			return nil, fmt.Errorf("warm-up start through %s: %w", rt, err)
		}
	}
	for i := 0; i < o.N; i++ {
		for j := range series {
			s := &series[j]
			if s.Skipped != "" {
				continue
			}
			prog.update("round %d/%d: %s", i+1, o.N, s.Name)
			if s.Runtime == CCI {
				if err := b.SetThrottle(s.Throttle); err != nil {
					return nil, err
				}
			}
			began := time.Now()
			if _, err := b.run(ctx, container{runtime: s.Runtime, id: b.newID("start"), seccomp: s.Seccomp, args: []string{"true"}}); err != nil {
				return nil, fmt.Errorf("start (%s): %w", s.Name, err)
			}
			s.Seconds = append(s.Seconds, time.Since(began).Seconds())
		}
	}
	prog.done("%d rounds of %d configurations done", o.N, len(series))
	for j := range series {
		s := &series[j]
		if s.Skipped != "" {
			b.logf("start: %-24s skipped: %s", s.Name, s.Skipped)
			continue
		}
		s.Median, s.P90 = Median(s.Seconds), Percentile(s.Seconds, 90)
		b.logf("start: %-24s median %.3f s, p90 %.3f s (n=%d)", s.Name, s.Median, s.P90, len(s.Seconds))
	}
	res := &StartResult{N: o.N, Series: series, ReadBps: Defaults().RootfsReadBps}
	if fi, err := os.Stat(e2eenv.BusyboxPath); err == nil {
		res.BusyboxBytes = fi.Size()
	}
	return res, nil
}
