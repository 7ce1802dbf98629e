//go:build linux

package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cci-shim/cci-shim/iothrottle"
)

// RootfsOptions configures the rootfs bench.
type RootfsOptions struct {
	// MiB is the size of the 1 MiB-block phases. Default 64 (67 MB: 11 s
	// at 6 MB/s).
	MiB int
	// SmallOps is the number of 4 KiB operations of the IOPS phases.
	// Default 11000 (11 s at 1000 IOPS).
	SmallOps int
	// Buffered adds buffered writes (without and with conv=fsync) to show
	// what cgroup v1 blkio does with them.
	Buffered bool
}

func (o RootfsOptions) withDefaults() RootfsOptions {
	if o.MiB == 0 {
		o.MiB = 64
	}
	if o.SmallOps == 0 {
		o.SmallOps = 11000
	}
	return o
}

// IOPhase is one dd run inside the container.
type IOPhase struct {
	Name   string `json:"name"`
	Path   string `json:"path"` // the file, on / (the rootfs device) or /vol (a volume)
	Op     string `json:"op"`   // "read" or "write"
	Direct bool   `json:"direct"`
	Fsync  bool   `json:"fsync"` // conv=fsync: dd returns after the data is on the device
	Sync   bool   `json:"sync"`  // then sync(1), timed with dd: the writeback done by the kernel's flusher threads
	Block  int    `json:"blockBytes"`
	Ops    int    `json:"ops"`
	Bytes  int64  `json:"bytes"`
	// Seconds is dd's time, measured with $EPOCHREALTIME in the container.
	Seconds float64 `json:"seconds"`
	Bps     float64 `json:"bps"`
	IOPS    float64 `json:"iops"`
	// Device is the I/O on the rootfs device charged to the container's
	// blkio cgroup during the phase (read on the host); nil for volumes.
	Device *iothrottle.DeviceIOStats `json:"device,omitempty"`
}

// RootfsResult is the rootfs bench's result.
type RootfsResult struct {
	// Device is the rootfs block device, "major:minor (source)".
	Device string                  `json:"device"`
	Limits iothrottle.DeviceLimits `json:"limits"`
	Phases []IOPhase               `json:"phases"`
	// The headline figures, from the phases: direct I/O on the rootfs.
	WriteBps  float64 `json:"writeBps"`
	ReadBps   float64 `json:"readBps"`
	WriteIOPS float64 `json:"writeIOPS"`
	ReadIOPS  float64 `json:"readIOPS"`
	// VolumeWriteBps is the same 1 MiB direct write on a volume;
	// VolumeSpeedup is VolumeWriteBps / WriteBps (target >= 5).
	VolumeWriteBps float64 `json:"volumeWriteBps"`
	VolumeSpeedup  float64 `json:"volumeSpeedup"`
}

// Phase names.
const (
	PhaseWrite1M       = "write 1MiB direct"
	PhaseRead1M        = "read 1MiB direct"
	PhaseWrite4K       = "write 4KiB direct"
	PhaseRead4K        = "read 4KiB direct"
	PhaseVolWrite1M    = "volume write 1MiB direct"
	PhaseVolWrite4K    = "volume write 4KiB direct"
	PhaseBuffered      = "write 1MiB buffered"
	PhaseBufferedSync  = "write 1MiB buffered, then sync"
	PhaseBufferedFsync = "write 1MiB buffered, conv=fsync"
)

const (
	benchFile = "/ccibench.dat"             // on the rootfs device
	volFile   = volumeDst + "/ccibench.dat" // on a volume
	// phaseTimeoutPerByte bounds a phase generously: 1 MB/s, plus a
	// minute and 1 ms per operation.
	phaseTimeoutPerByte = time.Second / 1_000_000
)

// Rootfs runs the rootfs bench in one container with the node's default
// throttles, one `ctr task exec` per phase.
func (b *Bench) Rootfs(ctx context.Context, o RootfsOptions) (*RootfsResult, error) {
	o = o.withDefaults()
	limits := NoBurst(Defaults()) // R8 from the first byte: no start burst
	if err := b.SetThrottle(limits); err != nil {
		return nil, err
	}
	vol, err := b.Volume("rootfs")
	if err != nil {
		return nil, err
	}
	id := b.newID("rootfs")
	if _, err := b.run(ctx, container{runtime: CCI, id: id, volume: vol, detach: true,
		args: []string{"sh", "-c", "trap 'exit 0' TERM; sleep 100000 & wait"}}); err != nil {
		return nil, fmt.Errorf("starting the rootfs container: %w", err)
	}
	defer b.remove(id)

	res := &RootfsResult{Limits: iothrottle.DeviceLimits{ReadBps: limits.RootfsReadBps, WriteBps: limits.RootfsWriteBps,
		ReadIOPS: limits.RootfsReadIOPS, WriteIOPS: limits.RootfsWriteIOPS}}
	mountinfo, err := b.exec(ctx, id, "cat", "/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	major, minor, source, err := rootDevice(mountinfo)
	if err != nil {
		return nil, err
	}
	res.Device = fmt.Sprintf("%d:%d (%s)", major, minor, source)
	cgroupPath, err := b.cgroupPath(ctx, id)
	if err != nil {
		return nil, err
	}
	b.logf("rootfs: device %s, cgroup %s, limits %+v", res.Device, cgroupPath, res.Limits)

	mib := o.MiB
	phases := []IOPhase{
		{Name: PhaseWrite1M, Path: benchFile, Op: "write", Direct: true, Block: 1 << 20, Ops: mib},
		{Name: PhaseRead1M, Path: benchFile, Op: "read", Direct: true, Block: 1 << 20, Ops: mib},
		{Name: PhaseWrite4K, Path: benchFile, Op: "write", Direct: true, Block: 4096, Ops: o.SmallOps},
		{Name: PhaseRead4K, Path: benchFile, Op: "read", Direct: true, Block: 4096, Ops: o.SmallOps},
		{Name: PhaseVolWrite1M, Path: volFile, Op: "write", Direct: true, Block: 1 << 20, Ops: mib},
		{Name: PhaseVolWrite4K, Path: volFile, Op: "write", Direct: true, Block: 4096, Ops: o.SmallOps},
	}
	if o.Buffered {
		phases = append(phases,
			// Order matters: sync also writes back what the first
			// phase left dirty, so the fsync phase starts clean.
			IOPhase{Name: PhaseBuffered, Path: "/ccibench.buf", Op: "write", Block: 1 << 20, Ops: mib},
			IOPhase{Name: PhaseBufferedSync, Path: "/ccibench.sync", Op: "write", Sync: true, Block: 1 << 20, Ops: mib},
			IOPhase{Name: PhaseBufferedFsync, Path: "/ccibench.fsync", Op: "write", Fsync: true, Block: 1 << 20, Ops: mib},
		)
	}
	prog := b.progress("rootfs")
	for i, p := range phases {
		prog.done("phase %d/%d: %s, %d x %d B on %s", i+1, len(phases), p.Name, p.Ops, p.Block, p.Path)
		onRootfs := !strings.HasPrefix(p.Path, volumeDst+"/")
		var before iothrottle.DeviceIOStats
		if onRootfs {
			if before, err = iothrottle.DeviceStats(cgroupPath, major, minor); err != nil {
				return nil, fmt.Errorf("reading blkio stats: %w", err)
			}
		}
		if err := b.ioPhase(ctx, id, &p); err != nil {
			return nil, err
		}
		if onRootfs {
			after, err := iothrottle.DeviceStats(cgroupPath, major, minor)
			if err != nil {
				return nil, fmt.Errorf("reading blkio stats: %w", err)
			}
			p.Device = &iothrottle.DeviceIOStats{ReadBytes: after.ReadBytes - before.ReadBytes, WriteBytes: after.WriteBytes - before.WriteBytes,
				ReadIOs: after.ReadIOs - before.ReadIOs, WriteIOs: after.WriteIOs - before.WriteIOs}
		}
		b.logf("rootfs: %-34s %s: %d x %d B in %.2f s: %.0f B/s, %.0f IO/s%s", p.Name, p.Path, p.Ops, p.Block, p.Seconds, p.Bps, p.IOPS, deviceNote(p.Device))
		res.Phases = append(res.Phases, p)
		switch p.Name {
		case PhaseWrite1M:
			res.WriteBps = p.Bps
		case PhaseRead1M:
			res.ReadBps = p.Bps
		case PhaseWrite4K:
			res.WriteIOPS = p.IOPS
		case PhaseRead4K:
			res.ReadIOPS = p.IOPS
		case PhaseVolWrite1M:
			res.VolumeWriteBps = p.Bps
		}
	}
	if res.WriteBps > 0 {
		res.VolumeSpeedup = res.VolumeWriteBps / res.WriteBps
	}
	return res, nil
}

func deviceNote(d *iothrottle.DeviceIOStats) string {
	if d == nil {
		return ""
	}
	return fmt.Sprintf("; device (cgroup): read %d B / %d IOs, write %d B / %d IOs", d.ReadBytes, d.ReadIOs, d.WriteBytes, d.WriteIOs)
}

// ddArgs renders p as a busybox dd command line (followed by sync when
// p.Sync).
func ddArgs(p IOPhase) string {
	bs := strconv.Itoa(p.Block)
	switch p.Block {
	case 1 << 20:
		bs = "1M"
	case 4096:
		bs = "4k"
	}
	var s string
	if p.Op == "read" {
		s = fmt.Sprintf("dd if=%s of=/dev/null bs=%s count=%d", p.Path, bs, p.Ops)
		if p.Direct {
			s += " iflag=direct"
		}
		return s
	}
	s = fmt.Sprintf("dd if=/dev/zero of=%s bs=%s count=%d conv=notrunc", p.Path, bs, p.Ops)
	if p.Fsync {
		s += ",fsync"
	}
	if p.Direct {
		s += " oflag=direct"
	}
	if p.Sync {
		s += " && sync"
	}
	return s
}

// ioPhase runs p in the container and fills in its measured fields.
func (b *Bench) ioPhase(ctx context.Context, id string, p *IOPhase) error {
	script := fmt.Sprintf(`t0=$EPOCHREALTIME; out=$( (%s) 2>&1) || { echo "$out" >&2; exit 1; }; echo "$t0 $EPOCHREALTIME"`, ddArgs(*p))
	p.Bytes = int64(p.Block) * int64(p.Ops)
	pctx, cancel := context.WithTimeout(ctx, time.Minute+time.Duration(p.Bytes)*phaseTimeoutPerByte+time.Duration(p.Ops)*time.Millisecond)
	defer cancel()
	out, err := b.exec(pctx, id, "sh", "-c", script)
	if err != nil {
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	f := strings.Fields(lastLine(out))
	if len(f) != 2 {
		return fmt.Errorf("%s: unexpected output %q", p.Name, out)
	}
	t0, err0 := strconv.ParseFloat(f[0], 64)
	t1, err1 := strconv.ParseFloat(f[1], 64)
	if err0 != nil || err1 != nil || t1 <= t0 {
		return fmt.Errorf("%s: unexpected timestamps %q", p.Name, out)
	}
	p.Seconds = t1 - t0
	p.Bps = float64(p.Bytes) / p.Seconds
	p.IOPS = float64(p.Ops) / p.Seconds
	return nil
}

// rootDevice finds the device of / in a container's mountinfo.
func rootDevice(mountinfo string) (major, minor int64, source string, err error) {
	for _, line := range strings.Split(mountinfo, "\n") {
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != "/" {
			continue
		}
		majS, minS, ok := strings.Cut(f[2], ":")
		if !ok {
			continue
		}
		major, err = strconv.ParseInt(majS, 10, 64)
		if err == nil {
			minor, err = strconv.ParseInt(minS, 10, 64)
		}
		if err != nil {
			return 0, 0, "", fmt.Errorf("root mount %q: %w", line, err)
		}
		for i := 6; i < len(f)-1; i++ {
			if f[i] == "-" && i+2 < len(f) {
				source = f[i+2]
			}
		}
		return major, minor, source, nil
	}
	return 0, 0, "", fmt.Errorf("no root mount in the container's mountinfo:\n%s", mountinfo)
}

// taskPID returns the host pid of container id's init process, as
// `ctr task ls` lists it.
func (b *Bench) taskPID(ctx context.Context, id string) (int, error) {
	out, err := b.ctr(ctx, nil, "task", "ls")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == id {
			if pid, err := strconv.Atoi(f[1]); err == nil && pid > 0 {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("container %s has no running task in `ctr task ls`:\n%s", id, out)
}

// cgroupPath returns the blkio (v1) or unified (v2) cgroup of container
// id's init process, as the host sees it: the shim chooses the path, so it
// is read from the process, not from the spec ctr made.
func (b *Bench) cgroupPath(ctx context.Context, id string) (string, error) {
	pid, err := b.taskPID(ctx, id)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", fmt.Errorf("reading the cgroup of %s: %w", id, err)
	}
	unified := ""
	for _, l := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "blkio" {
				return parts[2], nil
			}
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
		}
	}
	if unified == "" {
		return "", fmt.Errorf("container %s: no blkio or unified cgroup in /proc/%d/cgroup", id, pid)
	}
	return unified, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
