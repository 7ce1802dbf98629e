package podmetrics

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

func desc(name, help string, labels []string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string(nil), labels...), extra...), nil)
}

// The metrics, under cAdvisor's names where cAdvisor has one, the node
// agent's (cci_*) otherwise.
var (
	cpuUsage       = desc("container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", ctrLabels)
	cpuUser        = desc("container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", ctrLabels)
	cpuSystem      = desc("container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", ctrLabels)
	cpuPeriods     = desc("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", ctrLabels)
	cpuThrottledP  = desc("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", ctrLabels)
	cpuThrottledS  = desc("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", ctrLabels)
	cpuQuota       = desc("container_spec_cpu_quota", "CPU quota of the container in microseconds per period (-1: none).", ctrLabels)
	cpuPeriod      = desc("container_spec_cpu_period", "CPU period of the container in microseconds.", ctrLabels)
	memUsage       = desc("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", ctrLabels)
	memWorkingSet  = desc("container_memory_working_set_bytes", "Current working set in bytes.", ctrLabels)
	memRSS         = desc("container_memory_rss", "Size of RSS in bytes.", ctrLabels)
	memCache       = desc("container_memory_cache", "Number of bytes of page cache memory.", ctrLabels)
	memLimit       = desc("container_spec_memory_limit_bytes", "Memory limit for the container (0: unlimited).", ctrLabels)
	memOOM         = desc("container_oom_events_total", "Count of out of memory events observed for the container.", ctrLabels)
	psiCPUSome     = desc("container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", ctrLabels)
	psiCPUFull     = desc("container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", ctrLabels)
	psiMemSome     = desc("container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", ctrLabels)
	psiMemFull     = desc("container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", ctrLabels)
	psiIOSome      = desc("container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion, the rootfs throttle's included.", ctrLabels)
	psiIOFull      = desc("container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion, the rootfs throttle's included.", ctrLabels)
	fsUsage        = desc("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", fsLabels)
	fsLimit        = desc("container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", fsLabels)
	fsInodes       = desc("cci_rootfs_inodes", "Number of inodes of the rootfs filesystem (cAdvisor calls it container_fs_inodes_total, a name promtool refuses for a gauge).", fsLabels)
	fsInodesFree   = desc("container_fs_inodes_free", "Number of available Inodes.", fsLabels)
	fsReadBytes    = desc("container_fs_reads_bytes_total", "Cumulative count of bytes read.", fsLabels)
	fsWriteBytes   = desc("container_fs_writes_bytes_total", "Cumulative count of bytes written.", fsLabels)
	fsReads        = desc("container_fs_reads_total", "Cumulative count of reads completed.", fsLabels)
	fsWrites       = desc("container_fs_writes_total", "Cumulative count of writes completed.", fsLabels)
	fsLimitBps     = desc("cci_rootfs_throttle_limit_bytes_per_second", "The rootfs throttle's bandwidth limit (R8); absent when unlimited.", fsLabels, "direction")
	fsLimitIOPS    = desc("cci_rootfs_throttle_limit_iops", "The rootfs throttle's operations-per-second limit (R8); absent when unlimited.", fsLabels, "direction")
	fsBurstActive  = desc("cci_rootfs_throttle_burst_active", "1 while the rootfs runs at full speed in its start burst (R8), 0 once the throttle's limits hold; absent without a burst.", fsLabels)
	stdioBytes     = desc("cci_stdio_forwarded_bytes_total", "Stdout+stderr bytes forwarded to containerd.", ctrLabels)
	stdioWaits     = desc("cci_stdio_throttle_waits_total", "Times the stdout throttle (R14) made the container wait.", ctrLabels)
	stdioWait      = desc("cci_stdio_throttle_wait_seconds_total", "Time the stdout throttle (R14) held the container back.", ctrLabels)
	stdioLimit     = desc("cci_stdio_throttle_limit_bytes_per_second", "The stdout+stderr throttle's rate (R14).", ctrLabels)
	netRxBytes     = desc("container_network_receive_bytes_total", "Cumulative count of bytes received.", netLabels)
	netRxPackets   = desc("container_network_receive_packets_total", "Cumulative count of packets received.", netLabels)
	netRxErrors    = desc("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", netLabels)
	netRxDropped   = desc("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", netLabels)
	netTxBytes     = desc("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", netLabels)
	netTxPackets   = desc("container_network_transmit_packets_total", "Cumulative count of packets transmitted.", netLabels)
	netTxErrors    = desc("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", netLabels)
	netTxDropped   = desc("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", netLabels)
	logFiles       = desc("cci_log_files", "Log files followed now (R15).", podLabels)
	logLines       = desc("cci_log_lines_total", "Log records delivered to the sink.", podLabels)
	logBytes       = desc("cci_log_bytes_total", "Log bytes delivered to the sink.", podLabels)
	logSplit       = desc("cci_log_split_lines_total", "Lines over 250 KB split into parts (R19).", podLabels)
	logDropped     = desc("cci_log_dropped_lines_total", "Lines over 250 KB dropped (R19).", podLabels)
	logSkipped     = desc("cci_log_skipped_files_total", "Files not collected, by reason.", podLabels, "reason")
	logSinkErrors  = desc("cci_log_sink_errors_total", "Failed deliveries to the log sink.", podLabels)
	logLag         = desc("cci_log_lag_bytes", "Bytes written but not yet delivered.", podLabels)
	scrapeErrors   = desc("cci_pod_metrics_scrape_error", "1 when part of this scrape's figures could not be read (see the shim's log).", podLabels)
	allDescs       = []*prometheus.Desc{cpuUsage, cpuUser, cpuSystem, cpuPeriods, cpuThrottledP, cpuThrottledS, cpuQuota, cpuPeriod, memUsage, memWorkingSet, memRSS, memCache, memLimit, memOOM, psiCPUSome, psiCPUFull, psiMemSome, psiMemFull, psiIOSome, psiIOFull, fsUsage, fsLimit, fsInodes, fsInodesFree, fsReadBytes, fsWriteBytes, fsReads, fsWrites, fsLimitBps, fsLimitIOPS, fsBurstActive, stdioBytes, stdioWaits, stdioWait, stdioLimit, netRxBytes, netRxPackets, netRxErrors, netRxDropped, netTxBytes, netTxPackets, netTxErrors, netTxDropped, logFiles, logLines, logBytes, logSplit, logDropped, logSkipped, logSinkErrors, logLag, scrapeErrors}
	_              = prometheus.Collector((*Collector)(nil))
	counter, gauge = prometheus.CounterValue, prometheus.GaugeValue
)

// Collector turns a Source's Snapshot into metrics at each scrape. It keeps
// no state between scrapes.
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

// NewRegistry returns a registry holding only the pod's Collector: no Go
// runtime or process metrics of the process serving it.
func NewRegistry(src Source, log *slog.Logger) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src, log))
	return reg
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads one Snapshot and sends its metrics. A Snapshot error still
// sends what was read, and cci_pod_metrics_scrape_error says so.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	s, err := c.src.Snapshot(ctx)
	failed := 0.0
	if err != nil {
		c.log.Warn("pod metrics: reading figures", "error", err)
		failed = 1
	}
	e := emitter{ch: ch}
	e.metric(scrapeErrors, gauge, failed, s.Namespace, s.Pod)
	for _, ct := range s.Containers {
		e.container(s.Namespace, s.Pod, ct)
	}
	for _, n := range s.Network {
		l := []string{s.Namespace, s.Pod, "", n.Name}
		e.metric(netRxBytes, counter, float64(n.RxBytes), l...)
		e.metric(netRxPackets, counter, float64(n.RxPackets), l...)
		e.metric(netRxErrors, counter, float64(n.RxErrors), l...)
		e.metric(netRxDropped, counter, float64(n.RxDropped), l...)
		e.metric(netTxBytes, counter, float64(n.TxBytes), l...)
		e.metric(netTxPackets, counter, float64(n.TxPackets), l...)
		e.metric(netTxErrors, counter, float64(n.TxErrors), l...)
		e.metric(netTxDropped, counter, float64(n.TxDropped), l...)
	}
	if l := s.Logs; l != nil {
		p := []string{s.Namespace, s.Pod}
		e.metric(logFiles, gauge, float64(l.Files), p...)
		e.metric(logLines, counter, float64(l.Lines), p...)
		e.metric(logBytes, counter, float64(l.Bytes), p...)
		e.metric(logSplit, counter, float64(l.SplitLines), p...)
		e.metric(logDropped, counter, float64(l.DroppedLines), p...)
		e.metric(logSinkErrors, counter, float64(l.SinkErrors), p...)
		e.metric(logLag, gauge, float64(l.LagBytes), p...)
		reasons := make([]string, 0, len(l.Skipped))
		for r := range l.Skipped {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		for _, r := range reasons {
			e.metric(logSkipped, counter, float64(l.Skipped[r]), s.Namespace, s.Pod, r)
		}
	}
}

type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) metric(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
}

func (e emitter) container(ns, pod string, c ContainerStats) {
	l := []string{ns, pod, c.Name}
	if cpu := c.CPU; cpu != nil {
		e.metric(cpuUsage, counter, cpu.UsageSeconds, l...)
		e.metric(cpuUser, counter, cpu.UserSeconds, l...)
		e.metric(cpuSystem, counter, cpu.SystemSeconds, l...)
		e.metric(cpuPeriods, counter, float64(cpu.Periods), l...)
		e.metric(cpuThrottledP, counter, float64(cpu.ThrottledPeriods), l...)
		e.metric(cpuThrottledS, counter, cpu.ThrottledSeconds, l...)
		if cpu.PeriodMicros > 0 {
			e.metric(cpuQuota, gauge, float64(cpu.QuotaMicros), l...)
			e.metric(cpuPeriod, gauge, float64(cpu.PeriodMicros), l...)
		}
	}
	if m := c.Memory; m != nil {
		e.metric(memUsage, gauge, float64(m.UsageBytes), l...)
		e.metric(memWorkingSet, gauge, float64(m.WorkingSetBytes), l...)
		e.metric(memRSS, gauge, float64(m.RSSBytes), l...)
		e.metric(memCache, gauge, float64(m.CacheBytes), l...)
		e.metric(memLimit, gauge, float64(m.LimitBytes), l...)
		e.metric(memOOM, counter, float64(m.OOMKills), l...)
	}
	if p := c.Pressure; p != nil {
		for _, r := range []struct {
			psi        *PSI
			some, full *prometheus.Desc
		}{{p.CPU, psiCPUSome, psiCPUFull}, {p.Memory, psiMemSome, psiMemFull}, {p.IO, psiIOSome, psiIOFull}} {
			if r.psi != nil {
				e.metric(r.some, counter, r.psi.SomeSeconds, l...)
				e.metric(r.full, counter, r.psi.FullSeconds, l...)
			}
		}
	}
	if r := c.Rootfs; r != nil {
		fl := []string{ns, pod, c.Name, r.Device}
		if fs := r.FS; fs != nil {
			e.metric(fsUsage, gauge, float64(fs.UsageBytes), fl...)
			e.metric(fsLimit, gauge, float64(fs.LimitBytes), fl...)
			e.metric(fsInodes, gauge, float64(fs.InodesTotal), fl...)
			e.metric(fsInodesFree, gauge, float64(fs.InodesFree), fl...)
		}
		if io := r.IO; io != nil {
			e.metric(fsReadBytes, counter, float64(io.ReadBytes), fl...)
			e.metric(fsWriteBytes, counter, float64(io.WriteBytes), fl...)
			e.metric(fsReads, counter, float64(io.Reads), fl...)
			e.metric(fsWrites, counter, float64(io.Writes), fl...)
		}
		for _, lim := range []struct {
			d   *prometheus.Desc
			v   uint64
			dir string
		}{{fsLimitBps, r.Limits.ReadBps, "read"}, {fsLimitBps, r.Limits.WriteBps, "write"}, {fsLimitIOPS, r.Limits.ReadIOPS, "read"}, {fsLimitIOPS, r.Limits.WriteIOPS, "write"}} {
			if lim.v > 0 {
				e.metric(lim.d, gauge, float64(lim.v), append(fl, lim.dir)...)
			}
		}
		if b := r.BurstActive; b != nil {
			v := 0.0
			if *b {
				v = 1
			}
			e.metric(fsBurstActive, gauge, v, fl...)
		}
	}
	if st := c.Stdio; st != nil {
		e.metric(stdioBytes, counter, float64(st.BytesForwarded), l...)
		e.metric(stdioWaits, counter, float64(st.Waits), l...)
		e.metric(stdioWait, counter, st.WaitTime.Seconds(), l...)
		e.metric(stdioLimit, gauge, float64(st.RateBytesPerSec), l...)
	}
}
