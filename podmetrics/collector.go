package podmetrics

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// Source produces one pod's figures at scrape time.
type Source interface {
	Snapshot(ctx context.Context) (Snapshot, error)
}

// scrapeTimeout bounds one Snapshot.
const scrapeTimeout = 5 * time.Second

var (
	ctrLabels = []string{"namespace", "pod", "container"}
	fsLabels  = []string{"namespace", "pod", "container", "device"}
	netLabels = []string{"namespace", "pod", "container", "interface"}
	podLabels = []string{"namespace", "pod"}
)

// desc is one metric family: its name, help, type and label names, in the
// order the values are given; byName is the positions of the labels sorted
// by name, the order the exposition lists them in.
type desc struct {
	name, help string
	typ        dto.MetricType
	labels     []string
	byName     []int
}

func newDesc(typ dto.MetricType, name, help string, labels, extra []string) *desc {
	d := &desc{name: name, help: help, typ: typ, labels: append(slices.Clip(labels), extra...)}
	d.byName = make([]int, len(d.labels))
	for i := range d.byName {
		d.byName[i] = i
	}
	slices.SortFunc(d.byName, func(a, b int) int { return strings.Compare(d.labels[a], d.labels[b]) })
	return d
}

func counter(name, help string, labels []string, extra ...string) *desc {
	return newDesc(dto.MetricType_COUNTER, name, help, labels, extra)
}

func gauge(name, help string, labels []string, extra ...string) *desc {
	return newDesc(dto.MetricType_GAUGE, name, help, labels, extra)
}

// The metrics, under cAdvisor's names where cAdvisor has one, the node
// agent's (cci_*) otherwise.
var (
	cpuUsage      = counter("container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", ctrLabels)
	cpuUser       = counter("container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", ctrLabels)
	cpuSystem     = counter("container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", ctrLabels)
	cpuPeriods    = counter("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", ctrLabels)
	cpuThrottledP = counter("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", ctrLabels)
	cpuThrottledS = counter("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", ctrLabels)
	cpuQuota      = gauge("container_spec_cpu_quota", "CPU quota of the container in microseconds per period (-1: none).", ctrLabels)
	cpuPeriod     = gauge("container_spec_cpu_period", "CPU period of the container in microseconds.", ctrLabels)
	memUsage      = gauge("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", ctrLabels)
	memWorkingSet = gauge("container_memory_working_set_bytes", "Current working set in bytes.", ctrLabels)
	memRSS        = gauge("container_memory_rss", "Size of RSS in bytes.", ctrLabels)
	memCache      = gauge("container_memory_cache", "Number of bytes of page cache memory.", ctrLabels)
	memLimit      = gauge("container_spec_memory_limit_bytes", "Memory limit for the container (0: unlimited).", ctrLabels)
	memOOM        = counter("container_oom_events_total", "Count of out of memory events observed for the container.", ctrLabels)
	psiCPUSome    = counter("container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", ctrLabels)
	psiCPUFull    = counter("container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", ctrLabels)
	psiMemSome    = counter("container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", ctrLabels)
	psiMemFull    = counter("container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", ctrLabels)
	psiIOSome     = counter("container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion, the rootfs throttle's included.", ctrLabels)
	psiIOFull     = counter("container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion, the rootfs throttle's included.", ctrLabels)
	fsUsage       = gauge("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", fsLabels)
	fsLimit       = gauge("container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", fsLabels)
	fsInodes      = gauge("cci_rootfs_inodes", "Number of inodes of the rootfs filesystem (cAdvisor calls it container_fs_inodes_total, a name promtool refuses for a gauge).", fsLabels)
	fsInodesFree  = gauge("container_fs_inodes_free", "Number of available Inodes.", fsLabels)
	fsReadBytes   = counter("container_fs_reads_bytes_total", "Cumulative count of bytes read.", fsLabels)
	fsWriteBytes  = counter("container_fs_writes_bytes_total", "Cumulative count of bytes written.", fsLabels)
	fsReads       = counter("container_fs_reads_total", "Cumulative count of reads completed.", fsLabels)
	fsWrites      = counter("container_fs_writes_total", "Cumulative count of writes completed.", fsLabels)
	fsLimitBps    = gauge("cci_rootfs_throttle_limit_bytes_per_second", "The rootfs throttle's bandwidth limit (R8); absent when unlimited.", fsLabels, "direction")
	fsLimitIOPS   = gauge("cci_rootfs_throttle_limit_iops", "The rootfs throttle's operations-per-second limit (R8); absent when unlimited.", fsLabels, "direction")
	fsBurstActive = gauge("cci_rootfs_throttle_burst_active", "1 while the rootfs runs at full speed in its start burst (R8), 0 once the throttle's limits hold; absent without a burst.", fsLabels)
	stdioBytes    = counter("cci_stdio_forwarded_bytes_total", "Stdout+stderr bytes forwarded to containerd.", ctrLabels)
	stdioWaits    = counter("cci_stdio_throttle_waits_total", "Times the stdout throttle (R14) made the container wait.", ctrLabels)
	stdioWait     = counter("cci_stdio_throttle_wait_seconds_total", "Time the stdout throttle (R14) held the container back.", ctrLabels)
	stdioLimit    = gauge("cci_stdio_throttle_limit_bytes_per_second", "The stdout+stderr throttle's rate (R14).", ctrLabels)
	netRxBytes    = counter("container_network_receive_bytes_total", "Cumulative count of bytes received.", netLabels)
	netRxPackets  = counter("container_network_receive_packets_total", "Cumulative count of packets received.", netLabels)
	netRxErrors   = counter("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", netLabels)
	netRxDropped  = counter("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", netLabels)
	netTxBytes    = counter("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", netLabels)
	netTxPackets  = counter("container_network_transmit_packets_total", "Cumulative count of packets transmitted.", netLabels)
	netTxErrors   = counter("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", netLabels)
	netTxDropped  = counter("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", netLabels)
	logFiles      = gauge("cci_log_files", "Log files followed now (R15).", podLabels)
	logLines      = counter("cci_log_lines_total", "Log records delivered to the sink.", podLabels)
	logBytes      = counter("cci_log_bytes_total", "Log bytes delivered to the sink.", podLabels)
	logSplit      = counter("cci_log_split_lines_total", "Lines over 250 KB split into parts (R19).", podLabels)
	logDropped    = counter("cci_log_dropped_lines_total", "Lines over 250 KB dropped (R19).", podLabels)
	logSkipped    = counter("cci_log_skipped_files_total", "Files not collected, by reason.", podLabels, "reason")
	logSinkErrors = counter("cci_log_sink_errors_total", "Failed deliveries to the log sink.", podLabels)
	logLag        = gauge("cci_log_lag_bytes", "Bytes written but not yet delivered.", podLabels)
	scrapeErrors  = gauge("cci_pod_metrics_scrape_error", "1 when part of this scrape's figures could not be read (see the shim's log).", podLabels)
	allDescs      = []*desc{cpuUsage, cpuUser, cpuSystem, cpuPeriods, cpuThrottledP, cpuThrottledS, cpuQuota, cpuPeriod, memUsage, memWorkingSet, memRSS, memCache, memLimit, memOOM, psiCPUSome, psiCPUFull, psiMemSome, psiMemFull, psiIOSome, psiIOFull, fsUsage, fsLimit, fsInodes, fsInodesFree, fsReadBytes, fsWriteBytes, fsReads, fsWrites, fsLimitBps, fsLimitIOPS, fsBurstActive, stdioBytes, stdioWaits, stdioWait, stdioLimit, netRxBytes, netRxPackets, netRxErrors, netRxDropped, netTxBytes, netTxPackets, netTxErrors, netTxDropped, logFiles, logLines, logBytes, logSplit, logDropped, logSkipped, logSinkErrors, logLag, scrapeErrors}
)

// Collector turns a Source's Snapshot into metric families at each scrape.
// It keeps no state between scrapes. It builds the families itself and the
// handler writes them with prometheus/common's encoder: the client library's
// registry is not linked into the shim, whose every process (two per pod
// start) would otherwise pay for its package initialisation.
type Collector struct {
	src Source
	log *slog.Logger
}

// NewCollector returns a Collector over src; log receives read failures.
func NewCollector(src Source, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{src: src, log: log}
}

// Gather reads one Snapshot and returns its metric families, sorted by name,
// each family's series by their labels (the order a Prometheus registry
// gives). A Snapshot error still gives what was read, and
// cci_pod_metrics_scrape_error says so; the error result is always nil (it
// is there for prometheus.Gatherer, which tests check the output with).
func (c *Collector) Gather() ([]*dto.MetricFamily, error) {
	return c.gather(context.Background()), nil
}

func (c *Collector) gather(ctx context.Context) []*dto.MetricFamily {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	s, err := c.src.Snapshot(ctx)
	failed := 0.0
	if err != nil {
		c.log.Warn("pod metrics: reading figures", "error", err)
		failed = 1
	}
	e := emitter{families: make(map[*desc]*dto.MetricFamily, len(allDescs)), seen: map[string]bool{}}
	e.metric(scrapeErrors, failed, s.Namespace, s.Pod)
	for _, ct := range s.Containers {
		e.container(s.Namespace, s.Pod, ct)
	}
	for _, n := range s.Network {
		l := []string{s.Namespace, s.Pod, "", n.Name}
		e.metric(netRxBytes, float64(n.RxBytes), l...)
		e.metric(netRxPackets, float64(n.RxPackets), l...)
		e.metric(netRxErrors, float64(n.RxErrors), l...)
		e.metric(netRxDropped, float64(n.RxDropped), l...)
		e.metric(netTxBytes, float64(n.TxBytes), l...)
		e.metric(netTxPackets, float64(n.TxPackets), l...)
		e.metric(netTxErrors, float64(n.TxErrors), l...)
		e.metric(netTxDropped, float64(n.TxDropped), l...)
	}
	if l := s.Logs; l != nil {
		p := []string{s.Namespace, s.Pod}
		e.metric(logFiles, float64(l.Files), p...)
		e.metric(logLines, float64(l.Lines), p...)
		e.metric(logBytes, float64(l.Bytes), p...)
		e.metric(logSplit, float64(l.SplitLines), p...)
		e.metric(logDropped, float64(l.DroppedLines), p...)
		e.metric(logSinkErrors, float64(l.SinkErrors), p...)
		e.metric(logLag, float64(l.LagBytes), p...)
		reasons := make([]string, 0, len(l.Skipped))
		for r := range l.Skipped {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			e.metric(logSkipped, float64(l.Skipped[r]), s.Namespace, s.Pod, r)
		}
	}
	return e.sorted()
}

// emitter collects one scrape's series by family.
type emitter struct {
	families map[*desc]*dto.MetricFamily
	seen     map[string]bool // family and label values of each series emitted
}

// metric adds one series of d; values are d's label values, in d's order.
// A label value that is not valid UTF-8 (a name the tenant chose) has its
// invalid bytes replaced, as the exposition format requires UTF-8. A series
// already emitted (two containers of one name: a restarted one not yet
// removed) is left out, as a registry leaves it out: Prometheus refuses
// duplicate samples.
func (e emitter) metric(d *desc, v float64, values ...string) {
	if len(values) != len(d.labels) {
		panic("podmetrics: " + d.name + ": label values do not match its labels") // a bug in this file
	}
	valid := make([]string, len(values))
	for i, value := range values {
		valid[i] = strings.ToValidUTF8(value, "\uFFFD")
	}
	key := d.name + "\xff" + strings.Join(valid, "\xff") // \xff is in no valid UTF-8
	if e.seen[key] {
		return
	}
	e.seen[key] = true
	mf := e.families[d]
	if mf == nil {
		mf = &dto.MetricFamily{Name: proto.String(d.name), Help: proto.String(d.help), Type: d.typ.Enum()}
		e.families[d] = mf
	}
	m := &dto.Metric{Label: make([]*dto.LabelPair, len(values))}
	for i, j := range d.byName {
		m.Label[i] = &dto.LabelPair{Name: proto.String(d.labels[j]), Value: proto.String(valid[j])}
	}
	if d.typ == dto.MetricType_COUNTER {
		m.Counter = &dto.Counter{Value: proto.Float64(v)}
	} else {
		m.Gauge = &dto.Gauge{Value: proto.Float64(v)}
	}
	mf.Metric = append(mf.Metric, m)
}

// sorted is the families by name, each one's series by label values.
func (e emitter) sorted() []*dto.MetricFamily {
	out := make([]*dto.MetricFamily, 0, len(e.families))
	for _, mf := range e.families {
		slices.SortStableFunc(mf.Metric, func(a, b *dto.Metric) int {
			for i := range a.Label {
				if c := strings.Compare(a.Label[i].GetValue(), b.Label[i].GetValue()); c != 0 {
					return c
				}
			}
			return 0
		})
		out = append(out, mf)
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

func (e emitter) container(ns, pod string, c ContainerStats) {
	l := []string{ns, pod, c.Name}
	if cpu := c.CPU; cpu != nil {
		e.metric(cpuUsage, cpu.UsageSeconds, l...)
		e.metric(cpuUser, cpu.UserSeconds, l...)
		e.metric(cpuSystem, cpu.SystemSeconds, l...)
		e.metric(cpuPeriods, float64(cpu.Periods), l...)
		e.metric(cpuThrottledP, float64(cpu.ThrottledPeriods), l...)
		e.metric(cpuThrottledS, cpu.ThrottledSeconds, l...)
		if cpu.PeriodMicros > 0 {
			e.metric(cpuQuota, float64(cpu.QuotaMicros), l...)
			e.metric(cpuPeriod, float64(cpu.PeriodMicros), l...)
		}
	}
	if m := c.Memory; m != nil {
		e.metric(memUsage, float64(m.UsageBytes), l...)
		e.metric(memWorkingSet, float64(m.WorkingSetBytes), l...)
		e.metric(memRSS, float64(m.RSSBytes), l...)
		e.metric(memCache, float64(m.CacheBytes), l...)
		e.metric(memLimit, float64(m.LimitBytes), l...)
		e.metric(memOOM, float64(m.OOMKills), l...)
	}
	if p := c.Pressure; p != nil {
		for _, r := range []struct {
			psi        *PSI
			some, full *desc
		}{{p.CPU, psiCPUSome, psiCPUFull}, {p.Memory, psiMemSome, psiMemFull}, {p.IO, psiIOSome, psiIOFull}} {
			if r.psi != nil {
				e.metric(r.some, r.psi.SomeSeconds, l...)
				e.metric(r.full, r.psi.FullSeconds, l...)
			}
		}
	}
	if r := c.Rootfs; r != nil {
		fl := []string{ns, pod, c.Name, r.Device}
		if fs := r.FS; fs != nil {
			e.metric(fsUsage, float64(fs.UsageBytes), fl...)
			e.metric(fsLimit, float64(fs.LimitBytes), fl...)
			e.metric(fsInodes, float64(fs.InodesTotal), fl...)
			e.metric(fsInodesFree, float64(fs.InodesFree), fl...)
		}
		if io := r.IO; io != nil {
			e.metric(fsReadBytes, float64(io.ReadBytes), fl...)
			e.metric(fsWriteBytes, float64(io.WriteBytes), fl...)
			e.metric(fsReads, float64(io.Reads), fl...)
			e.metric(fsWrites, float64(io.Writes), fl...)
		}
		for _, lim := range []struct {
			d   *desc
			v   uint64
			dir string
		}{{fsLimitBps, r.Limits.ReadBps, "read"}, {fsLimitBps, r.Limits.WriteBps, "write"}, {fsLimitIOPS, r.Limits.ReadIOPS, "read"}, {fsLimitIOPS, r.Limits.WriteIOPS, "write"}} {
			if lim.v > 0 {
				e.metric(lim.d, float64(lim.v), append(fl, lim.dir)...)
			}
		}
		if b := r.BurstActive; b != nil {
			v := 0.0
			if *b {
				v = 1
			}
			e.metric(fsBurstActive, v, fl...)
		}
	}
	if st := c.Stdio; st != nil {
		e.metric(stdioBytes, float64(st.BytesForwarded), l...)
		e.metric(stdioWaits, float64(st.Waits), l...)
		e.metric(stdioWait, st.WaitTime.Seconds(), l...)
		e.metric(stdioLimit, float64(st.RateBytesPerSec), l...)
	}
}
