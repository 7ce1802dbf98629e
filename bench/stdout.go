//go:build linux

package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cci-shim/cci-shim/iothrottle"
)

// StdoutOptions configures the stdout bench.
type StdoutOptions struct {
	// MB is how much the container writes, in 10^6 bytes. Default 30.
	MB int
	// Reps is the number of unthrottled runs per runtime (alternating
	// cci, runc). Default 5; negative skips the unthrottled comparison.
	Reps int
	// Repeat is how many times an unthrottled run writes the MB, so that
	// a run lasts long enough to time (30 MB take tens of milliseconds).
	// Default 10.
	Repeat int
	// RateBps is the stdio throttle of the throttled run. Default
	// iothrottle.DefaultStdioBytesPerSec; negative skips the throttled run.
	RateBps int64
}

func (o StdoutOptions) withDefaults() StdoutOptions {
	if o.MB == 0 {
		o.MB = 30
	}
	if o.Reps == 0 {
		o.Reps = 5
	}
	if o.Repeat <= 0 {
		o.Repeat = 10
	}
	if o.RateBps == 0 {
		o.RateBps = iothrottle.DefaultStdioBytesPerSec
	}
	return o
}

// StreamRun is one container writing the data to stdout as fast as it can.
type StreamRun struct {
	Runtime string `json:"runtime"`
	// StdioBps is the cci shim's stdio throttle (0: off; runc: none).
	StdioBps int64 `json:"stdioBps"`
	// Bytes is what ctr delivered; Want what the container wrote.
	Bytes int64 `json:"bytes"`
	Want  int64 `json:"want"`
	// SHA256OK: the delivered bytes hash to the data's sha256.
	SHA256OK bool `json:"sha256OK"`
	// ForwardedBps is the rate at which bytes reached ctr's stdout, from
	// the first byte to the last (the first read's bytes excluded).
	ForwardedBps float64 `json:"forwardedBps"`
	// PeakWindowBps is the most bytes received in any 1 s window.
	PeakWindowBps float64 `json:"peakWindowBps"`
	// ContainerBps is the writer's own rate: Want over the time `cat`
	// took, read from $EPOCHREALTIME inside the container.
	ContainerBps float64 `json:"containerBps"`
	// Seconds is the container's writing time; Wall the whole ctr run.
	Seconds float64 `json:"seconds"`
	Wall    float64 `json:"wallSeconds"`
	// ShimPeakRSS is the cci shim's peak resident memory (the max of its
	// VmHWM and VmRSS, sampled every 20 ms), in bytes; 0 for runc.
	ShimPeakRSS int64 `json:"shimPeakRSSBytes"`
	// ShimCPUSeconds and RuncShimCPUSeconds are the user+system CPU time
	// of the cci shim (0 for runc) and of containerd's runc shim (the
	// backend under cci) at their last sample, every 20 ms.
	ShimCPUSeconds     float64 `json:"shimCPUSeconds,omitempty"`
	RuncShimCPUSeconds float64 `json:"runcShimCPUSeconds,omitempty"`
	// MachineBusy is the fraction of all the machine's CPU time that was
	// busy while the bytes flowed (from /proc/stat, every 20 ms): near 1,
	// the stream was CPU-bound.
	MachineBusy float64 `json:"machineBusy,omitempty"`
	// Shim is the last stdio snapshot of the shim's stats.json, when read.
	Shim *iothrottle.Stats `json:"shimStats,omitempty"`
}

// StdoutResult is the stdout bench's result.
type StdoutResult struct {
	MB int `json:"mb"`
	// Repeat is how many times the unthrottled runs wrote the MB.
	Repeat int `json:"repeat"`
	// Unthrottled are the cci (throttle off) and runc runs, in run order.
	Unthrottled []StreamRun `json:"unthrottled,omitempty"`
	// CCIMedianBps and RuncMedianBps are the median forwarded rates;
	// Ratio is cci/runc (target >= TargetStdoutRatio).
	CCIMedianBps  float64 `json:"cciMedianBps,omitempty"`
	RuncMedianBps float64 `json:"runcMedianBps,omitempty"`
	Ratio         float64 `json:"ratio,omitempty"`
	// RatioMin and RatioMax are the extremes of the per-repetition
	// ratios (cci run over the runc run next to it): the spread.
	RatioMin float64 `json:"ratioMin,omitempty"`
	RatioMax float64 `json:"ratioMax,omitempty"`
	// Throttled is the cci run with the stdio throttle on.
	Throttled *StreamRun `json:"throttled,omitempty"`
}

// stdoutScript writes its arguments (/data, repeated) to stdout with cat
// and prints when cat started and ended on stderr.
const stdoutScript = `t0=$EPOCHREALTIME; cat "$@"; t1=$EPOCHREALTIME; echo "cci-times $t0 $t1" >&2`

// dataImage is the image the stdout bench's containers run: busybox and the
// data file at /data. A pod gets no host directory with ctr, so the data
// comes with the image, read from each container's own rootfs.
const dataImage = "localhost/cci/bench-data:test"

// Stdout runs the stdout bench. It leaves the node config at the defaults.
func (b *Bench) Stdout(ctx context.Context, o StdoutOptions) (*StdoutResult, error) {
	o = o.withDefaults()
	defer b.SetThrottle(Defaults())
	res := &StdoutResult{MB: o.MB, Repeat: o.Repeat}
	data := filepath.Join(b.Env.Dir, "bench-data")
	sum, err := writeRandom(data, int64(o.MB)*1_000_000)
	if err != nil {
		return nil, err
	}
	if err := b.Env.ImportFilesImage(dataImage, map[string]string{"/data": data}); err != nil {
		return nil, fmt.Errorf("building the data image: %w", err)
	}
	size := int64(o.MB) * 1_000_000
	once := wantData{n: size, sum: sum} // the data, cat once
	if o.Reps > 0 {
		if err := b.SetThrottle(Off); err != nil {
			return nil, err
		}
		want := wantData{n: size * int64(o.Repeat), sum: randomSHA256(size, o.Repeat)}
		// One unmeasured pass of the data per runtime warms the page
		// cache with the data image, the shims and the runtime, as the
		// start bench does: otherwise the first measured run, cci's,
		// pays for them alone.
		for _, rt := range []string{CCI, Runc} {
			b.progress("stdout").done("warm-up run through %s: %d MB, not measured", shortRuntime(rt), o.MB)
			if _, err := b.stream(ctx, rt, once, 1, 0); err != nil {
				return nil, fmt.Errorf("warm-up run through %s: %w", rt, err)
			}
		}
		var cci, runc []float64
		for i := 0; i < o.Reps; i++ {
			// Alternate which runtime goes first, so that neither always
			// follows the other (page cache, CPU frequency, neighbours).
			order := []string{CCI, Runc}
			if i%2 == 1 {
				order = []string{Runc, CCI}
			}
			for _, rt := range order {
				b.progress("stdout").done("unthrottled run %d/%d through %s: %d MB", i+1, o.Reps, shortRuntime(rt), int64(o.MB)*int64(o.Repeat))
				r, err := b.stream(ctx, rt, want, o.Repeat, 0)
				if err != nil {
					return nil, err
				}
				b.logf("stdout: %s unthrottled: %.1f MB/s, sha256 ok %v", shortRuntime(rt), r.ForwardedBps/1e6, r.SHA256OK)
				res.Unthrottled = append(res.Unthrottled, *r)
				if rt == CCI {
					cci = append(cci, r.ForwardedBps)
				} else {
					runc = append(runc, r.ForwardedBps)
				}
			}
			ratio := cci[i] / runc[i] // the pair run back to back
			if i == 0 || ratio < res.RatioMin {
				res.RatioMin = ratio
			}
			res.RatioMax = max(res.RatioMax, ratio)
		}
		res.CCIMedianBps, res.RuncMedianBps = Median(cci), Median(runc)
		res.Ratio = res.CCIMedianBps / res.RuncMedianBps
	}
	if o.RateBps > 0 {
		th := Defaults()
		th.StdioBps = o.RateBps
		if err := b.SetThrottle(th); err != nil {
			return nil, err
		}
		b.progress("stdout").done("throttled run through cci at %d B/s: %d MB (about %.0f s)", o.RateBps, o.MB, float64(size)/float64(o.RateBps))
		r, err := b.stream(ctx, CCI, once, 1, o.RateBps)
		if err != nil {
			return nil, err
		}
		b.logf("stdout: cci at %d B/s: forwarded %.0f B/s, container %.0f B/s, shim peak RSS %d KiB",
			o.RateBps, r.ForwardedBps, r.ContainerBps, r.ShimPeakRSS>>10)
		res.Throttled = r
	}
	return res, nil
}

// StdoutThrottled runs only the throttled part of the stdout bench.
func (b *Bench) StdoutThrottled(ctx context.Context, mb int, rateBps int64) (*StreamRun, error) {
	res, err := b.Stdout(ctx, StdoutOptions{MB: mb, Reps: -1, RateBps: rateBps})
	if err != nil {
		return nil, err
	}
	return res.Throttled, nil
}

// stream runs one container that cats the image's data file repeat times
// to stdout; want is what that makes.
func (b *Bench) stream(ctx context.Context, runtime string, want wantData, repeat int, stdioBps int64) (*StreamRun, error) {
	id := b.newID("stdout")
	rcv := &receiver{h: sha256.New()}
	r := &StreamRun{Runtime: runtime, StdioBps: stdioBps, Want: want.n}
	args := []string{"sh", "-c", stdoutScript, "sh"}
	for range repeat {
		args = append(args, "/data")
	}
	var stderr bytes.Buffer

	// Sample both runtimes alike, so that the sampler's cost is in both.
	sampler := b.startShimSampler(ctx, id)
	began := time.Now()
	timeout := 2 * time.Minute
	if stdioBps > 0 { // twice the expected time, on top
		timeout += time.Duration(2 * float64(want.n) / float64(stdioBps) * float64(time.Second))
	}
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	_, err := b.run(runCtx, container{runtime: runtime, id: id, image: dataImage, stdout: rcv, stderr: &stderr, args: args})
	cancel()
	r.Wall = time.Since(began).Seconds()
	cci, runc, stats := sampler.stop()
	r.MachineBusy = sampler.busyBetween(rcv.first, rcv.last)
	r.ShimPeakRSS, r.ShimCPUSeconds, r.RuncShimCPUSeconds, r.Shim = cci.peakRSS, cci.cpu, runc.cpu, stats
	if err != nil {
		return nil, fmt.Errorf("stdout run through %s: %w", runtime, err)
	}
	r.Bytes = rcv.n
	r.SHA256OK = rcv.n == want.n && hex.EncodeToString(rcv.h.Sum(nil)) == want.sum
	r.ForwardedBps = rcv.rate()
	r.PeakWindowBps = rcv.peakWindow(time.Second)
	t0, t1, err := readTimes(stderr.String())
	if err != nil {
		return nil, err
	}
	r.Seconds = t1 - t0
	if r.Seconds > 0 {
		r.ContainerBps = float64(want.n) / r.Seconds
	}
	return r, nil
}

// wantData is the data file: its size and sha256 (hex).
type wantData struct {
	n   int64
	sum string
}

// writeRandom writes n pseudo-random (incompressible, reproducible) bytes
// to path and returns their sha256 (hex).
func writeRandom(path string, n int64) (sum string, _ error) {
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("creating data file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if err := generate(n, func(p []byte) error { h.Write(p); _, err := f.Write(p); return err }); err != nil {
		return "", fmt.Errorf("writing data file: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("writing data file: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// randomSHA256 is the sha256 (hex) of writeRandom's n bytes, repeat times.
func randomSHA256(n int64, repeat int) string {
	h := sha256.New()
	for range repeat {
		generate(n, func(p []byte) error { h.Write(p); return nil })
	}
	return hex.EncodeToString(h.Sum(nil))
}

// generate produces the bench's n pseudo-random bytes, 1 MiB at a time.
func generate(n int64, emit func([]byte) error) error {
	var seed [32]byte
	copy(seed[:], "cci-shim ccibench stdout data...")
	src := rand.NewChaCha8(seed)
	buf := make([]byte, 1<<20)
	for left := n; left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		src.Read(chunk)
		if err := emit(chunk); err != nil {
			return err
		}
		left -= int64(len(chunk))
	}
	return nil
}

// readTimes reads "cci-times t0 t1" (seconds since the epoch), the line
// the container printed on stderr among ctr's own.
func readTimes(stderr string) (t0, t1 float64, err error) {
	var f []string
	for _, l := range strings.Split(stderr, "\n") {
		if x := strings.Fields(l); len(x) == 3 && x[0] == "cci-times" {
			f = x[1:]
		}
	}
	b := stderr
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("the container printed no timestamps on stderr: %q", b)
	}
	if t0, err = strconv.ParseFloat(f[0], 64); err == nil {
		t1, err = strconv.ParseFloat(f[1], 64)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("container timestamps %q: %w (does the shell set $EPOCHREALTIME?)", b, err)
	}
	return t0, t1, nil
}

// receiver is ctr's stdout: it counts, hashes and timestamps what arrives.
// exec.Cmd writes to it from one goroutine, and it is read after Wait.
type receiver struct {
	h       hash.Hash
	n       int64
	firstN  int64
	first   time.Time
	last    time.Time
	samples []sample
}

type sample struct {
	t time.Time
	n int64 // bytes received up to and including this write
}

func (r *receiver) Write(p []byte) (int, error) {
	now := time.Now()
	if r.n == 0 {
		r.first, r.firstN = now, int64(len(p))
	}
	r.n += int64(len(p))
	r.last = now
	r.h.Write(p)
	r.samples = append(r.samples, sample{now, r.n})
	return len(p), nil
}

// rate is the bytes received after the first write over the time from the
// first write to the last.
func (r *receiver) rate() float64 {
	d := r.last.Sub(r.first).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(r.n-r.firstN) / d
}

// peakWindow is the most bytes received in any window of length w (after
// the write opening it), per second.
func (r *receiver) peakWindow(w time.Duration) float64 {
	if len(r.samples) == 0 || r.last.Sub(r.first) < w {
		return 0
	}
	var best int64
	j := 0
	for i, s := range r.samples {
		for j+1 < len(r.samples) && r.samples[j+1].t.Sub(s.t) <= w {
			j++
		}
		if j > i {
			best = max(best, r.samples[j].n-s.n)
		}
	}
	return float64(best) / w.Seconds()
}

func shortRuntime(rt string) string {
	switch rt {
	case CCI:
		return "cci"
	case Runc:
		return "runc"
	}
	return rt
}
