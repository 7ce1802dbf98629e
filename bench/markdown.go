//go:build linux

package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes the report: the checks, every table, the charts
// (each linked as <chartBase>-<name>.svg, written beside it by the
// caller), the method.
func (r *Results) WriteMarkdown(w io.Writer, chartBase string, charts []Chart) {
	fmt.Fprintf(w, "# ccibench report (%s)\n\n", r.Command)
	fmt.Fprintf(w, "cci-shim (`io.containerd.cci.v2`) against containerd's runc shim, measured in the same run, in one private containerd v2.4.2 "+
		"with the blockfile snapshotter (every container's `/` is a 20 GiB `/dev/loopN`). Figures are ratios against that baseline. Started %s. %s\n",
		r.Host.Began, r.busyNote())
	for _, t := range r.tables() {
		t.markdown(w)
	}
	if len(charts) > 0 {
		fmt.Fprintf(w, "\n## Charts\n\n")
		for _, c := range charts {
			fmt.Fprintf(w, "![%s](%s-%s.svg)\n\n", c.Title, chartBase, c.Name)
		}
	}
	fmt.Fprint(w, methodNotes)
	if r.Density != nil || r.Logs != nil || r.Burst != nil {
		fmt.Fprint(w, moreMethodNotes)
	}
	if f := r.Rootfs; f != nil {
		fmt.Fprint(w, r.bufferedNotes())
	}
}

// moreMethodNotes describe density, logs and burst.
const moreMethodNotes = `- Density: pods through CRI (RuntimeClass handlers runc and cci; the gVisor series sets the cci node config's backend to
  gvisor), N started P at a time by P workers; each series' pods are removed, and their shims gone, before the next series.
  Memory is PSS from /proc/<pid>/smaps_rollup of every process under the pod's shims, so shared pages count once across pods.
- Logs: logfwd's public API (New, Run, Drain) on host directories, without containerd: the collector the shim runs per pod.
  The SIGKILL runs re-execute ccibench as the collector process (a hidden command) and kill it with SIGKILL.
- Burst: iothrottle.WatchBurst on a loop device in a blkio cgroup the bench creates, without containerd; the cgroup's own
  counters are the figures.
`

const methodNotes = `
## Method

- Units: rates in bytes per second; MB = 10^6 bytes, so 6 MB/s = 6,000,000 B/s and 1 MB/s = 1,000,000 B/s.
  dd's ` + "`bs=1M`" + ` is 1 MiB = 1,048,576 bytes, ` + "`bs=4k`" + ` 4,096 bytes.
- Tools: busybox dd (the test image is Debian's busybox-static; fio is not used). Direct I/O (` + "`oflag=direct`/`iflag=direct`" + `)
  unless a phase says buffered. Timing is inside the container: the shell's ` + "`$EPOCHREALTIME`" + ` (microseconds) around the command,
  so container start and ` + "`ctr`" + ` overheads are not in the rates.
- stdout: the host writes N MB of ChaCha8 pseudo-random bytes to a pod volume; the container runs ` + "`cat /vol/data`" + `; the bench
  reads ` + "`ctr run`" + `'s stdout, hashing it and timestamping every read. Unthrottled runs alternate cci and runc,
  after one unmeasured warm-up pass per runtime.
- Volumes: an emptyDir laid out as kubelet does (` + "`<kubelet root>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>`" + `, bound with
  ` + "`ctr run --mount type=bind,...,options=rbind:rw`" + ` and the pod-uid annotation); it is on the host's disk, not on the throttled loop device.
- Start latency: the wall time of ` + "`ctr run --rm IMAGE ID true`" + ` (create, start, wait, delete), configurations interleaved,
  after one unmeasured warm-up start per runtime.
- Shim: one sleeping container at a time (` + "`ctr run -d`" + `); its shim daemon, the task's parent, read from
  /proc/<pid>/task/*/schedstat (run time and timeslices per thread), /proc/<pid>/stat (minflt) and smaps_rollup (PSS).
  The Go runtime starts sysmon as a program's first thread after the main one, so the second thread by id is sysmon.
`

// bufferedNotes explains the buffered phases, with the figures measured.
func (r *Results) bufferedNotes() string {
	var b strings.Builder
	phases := map[string]*IOPhase{}
	for i := range r.Rootfs.Phases {
		phases[r.Rootfs.Phases[i].Name] = &r.Rootfs.Phases[i]
	}
	limit := float64(r.Rootfs.Limits.WriteBps)
	b.WriteString("\n## Buffered writes, cgroup v1 and cgroup v2\n\n")
	if p := phases[PhaseBuffered]; p != nil {
		fmt.Fprintf(&b, "- `dd bs=1M` without fsync on `/`: %.0f B/s (%.0fx the %.0f B/s limit), %d bytes charged to the container's "+
			"blkio cgroup during the phase. dd returns once the data is in the page cache.\n", p.Bps, p.Bps/limit, limit, deviceWrite(p))
	}
	if p := phases[PhaseBufferedSync]; p != nil {
		fmt.Fprintf(&b, "- `dd bs=1M && sync` (this file and the one before written back by the kernel's flusher threads): %.0f B/s "+
			"(%.0fx the limit), %d bytes charged. On cgroup v1 the flusher's writeback is charged to the root blkio cgroup: "+
			"**buffered writeback is not throttled**.\n", p.Bps, p.Bps/limit, deviceWrite(p))
	}
	if p := phases[PhaseBufferedFsync]; p != nil {
		fmt.Fprintf(&b, "- `dd bs=1M conv=fsync`: %.0f B/s (%.2fx the limit), %d bytes charged. fsync(2) writes the file's dirty pages "+
			"back from the caller's own context, so on cgroup v1 those bios are charged to the container's cgroup and throttled; "+
			"pages the flusher reaches first (dirty_expire, dirty_background thresholds) escape. A bigger file, or memory pressure, "+
			"shifts writes from the first kind to the second.\n", p.Bps, p.Bps/limit, deviceWrite(p))
	}
	b.WriteString("- cgroup v2 (`io.max`, the same limits: `MAJ:MIN rbps=6000000 wbps=6000000 riops=1000 wiops=1000`) throttles buffered " +
		"writeback too: with the memory and io controllers enabled together, cgroup writeback tags dirty pages with the cgroup that " +
		"dirtied them, the flusher's bios are charged to that cgroup, and balance_dirty_pages slows the writer, so a buffered writer " +
		"converges to the limit. This host's v2 hierarchy has no io controller (cgroup v1 hybrid), so that is documented, not " +
		"measured here; iothrottle writes io.max on unified hosts.\n")
	b.WriteString("- With Kata the VMM does the disk I/O. Cloud Hypervisor opens a hot-plugged disk with O_DIRECT only when Kata's " +
		"`block_device_cache_set = true` and `block_device_cache_direct = true` (both off by default); otherwise the VMM's writes " +
		"are buffered on the host and, on a cgroup v1 host, their writeback escapes the sandbox cgroup's blkio throttle as above.\n")
	return b.String()
}

func deviceWrite(p *IOPhase) uint64 {
	if p.Device == nil {
		return 0
	}
	return p.Device.WriteBytes
}
