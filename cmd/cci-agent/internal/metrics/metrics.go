// Package metrics is cci-agent's Prometheus collector: the node checks, the
// cci shims' per-pod stats files and the GPU ledger, read at scrape time and
// labelled as Kubernetes labels pods (cAdvisor, kube-state-metrics):
// namespace, pod, uid and container from the CRI annotations, with the
// containerd IDs only in secondary labels (containerd_namespace,
// sandbox_id, id). The pause container is not a container here.
//
// It is not for serving HTTP (cli does, with the Prometheus client's Go,
// process and build collectors beside this one) and not for per-pod
// endpoints (R27 is podmetrics').
package metrics

import (
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/internal/version"
	"github.com/cci-shim/cci-shim/shim/podstats"
)

// Source is what the collector reads at scrape time.
type Source interface {
	// Checks returns the last node checks.
	Checks() []checks.Result
	// Pods returns the stats files, keyed "<containerd namespace>/<sandbox id>".
	Pods() (map[string]podstats.Pod, error)
	// GPUAllocations returns the GPU ledger's allocations (nil without one).
	GPUAllocations() ([]gpu.Allocation, error)
}

var (
	podLabels = []string{"namespace", "pod", "uid", "containerd_namespace", "sandbox_id"}
	ctrLabels = append(append([]string{}, podLabels...), "container", "id")
	dirLabels = append(append([]string{}, ctrLabels...), "direction")
)

func desc(name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// Collector is the agent's collector.
type Collector struct {
	src        Source
	log        *slog.Logger
	readErrors atomic.Uint64

	buildInfo, pods, podInfo, statsTime                                *prometheus.Desc
	checkOK, checkStatus                                               *prometheus.Desc
	stdioLimit, stdioBytes, stdioWaits, stdioWait                      *prometheus.Desc
	rootfsLimitBytes, rootfsLimitOps, rootfsBytes, rootfsIOs           *prometheus.Desc
	logFiles, logFilesOpened, logRecords, logBytes, logSplit, logDrop  *prometheus.Desc
	logSkipped, logSinkErrors, logLag, logTruncations, logLastDelivery *prometheus.Desc
	gpusAllocated, statsErrors                                         *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a collector reading src.
func New(src Source, log *slog.Logger) *Collector {
	return &Collector{
		src: src, log: log,
		buildInfo: desc("cci_build_info", "cci-shim's build: version and revision (set at build), Go, and the containerd libraries built in; always 1.",
			[]string{"version", "revision", "goversion", "containerd"}),
		pods:      desc("cci_pods", "Pods served by cci shims on this node (stats files present).", nil),
		podInfo:   desc("cci_pod_info", "A pod served by a cci shim; always 1. Joins the Kubernetes names to containerd's IDs.", podLabels),
		statsTime: desc("cci_pod_stats_timestamp_seconds", "When the pod's shim last wrote its stats file (Unix time): each second while its figures change, at most 10 s apart while they do not.", podLabels),
		checkOK: desc("cci_node_check_ok", "1 when the node check passed (OK, or SKIP: it does not apply to this node's backend); 0 for WARN and FAIL.",
			[]string{"check"}),
		checkStatus: desc("cci_node_check_status", "The node check's status: 1 for the current one of OK, WARN, FAIL, SKIP, 0 for the others.",
			[]string{"check", "status"}),
		stdioLimit: desc("cci_container_stdio_limit_bytes_per_second", "The container's configured stdout+stderr forwarding rate (R14); 0 is unlimited.", ctrLabels),
		stdioBytes: desc("cci_container_stdio_forwarded_bytes_total", "Stdout+stderr bytes forwarded to containerd.", ctrLabels),
		stdioWaits: desc("cci_container_stdio_throttle_waits_total", "Writes the stdout throttle held back.", ctrLabels),
		stdioWait:  desc("cci_container_stdio_throttle_wait_seconds_total", "Time the stdout throttle held the container back.", ctrLabels),
		rootfsLimitBytes: desc("cci_container_rootfs_limit_bytes_per_second", "The rootfs device's configured bandwidth limit per direction (R8); 0 is unlimited.",
			dirLabels),
		rootfsLimitOps: desc("cci_container_rootfs_limit_operations_per_second", "The rootfs device's configured IOPS limit per direction (R8); 0 is unlimited.",
			dirLabels),
		rootfsBytes:     desc("cci_container_rootfs_io_bytes_total", "Bytes moved on the rootfs device, by the cgroup that carries the throttle.", dirLabels),
		rootfsIOs:       desc("cci_container_rootfs_io_operations_total", "I/O operations on the rootfs device, by the cgroup that carries the throttle.", dirLabels),
		logFiles:        desc("cci_pod_log_files", "Log files the pod's collector follows now.", podLabels),
		logFilesOpened:  desc("cci_pod_log_files_opened_total", "Log files the pod's collector started following.", podLabels),
		logRecords:      desc("cci_pod_log_records_total", "Log records delivered to the sink (a split line counts once per part).", podLabels),
		logBytes:        desc("cci_pod_log_bytes_total", "Log line bytes delivered to the sink.", podLabels),
		logSplit:        desc("cci_pod_log_split_lines_total", "Lines over 250 KB split into parts (R19).", podLabels),
		logDrop:         desc("cci_pod_log_dropped_lines_total", "Lines over 250 KB dropped (R19, long_lines = \"drop\").", podLabels),
		logSkipped:      desc("cci_pod_log_skipped_files_total", "Files not collected, by reason.", append(append([]string{}, podLabels...), "reason")),
		logSinkErrors:   desc("cci_pod_log_sink_errors_total", "Failed deliveries to the sink.", podLabels),
		logLag:          desc("cci_pod_log_lag_bytes", "Bytes written to log files but not yet delivered.", podLabels),
		logTruncations:  desc("cci_pod_log_truncations_total", "Log files truncated or replaced in place.", podLabels),
		logLastDelivery: desc("cci_pod_log_last_delivery_timestamp_seconds", "When the sink last accepted records (Unix time; 0 never).", podLabels),
		gpusAllocated:   desc("cci_gpus_allocated", "GPUs held by pods, from the node's GPU ledger.", nil),
		statsErrors:     desc("cci_agent_stats_read_errors_total", "Scrapes on which a pod stats file or the GPU ledger could not be read.", nil),
	}
}

// Describe sends every description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.pods, c.podInfo, c.statsTime, c.checkOK, c.checkStatus,
		c.stdioLimit, c.stdioBytes, c.stdioWaits, c.stdioWait, c.rootfsLimitBytes, c.rootfsLimitOps, c.rootfsBytes, c.rootfsIOs,
		c.logFiles, c.logFilesOpened, c.logRecords, c.logBytes, c.logSplit, c.logDrop, c.logSkipped, c.logSinkErrors, c.logLag,
		c.logTruncations, c.logLastDelivery, c.gpusAllocated, c.statsErrors} {
		ch <- d
	}
}

// Collect reads the sources.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	in := version.Get()
	gauge(c.buildInfo, 1, in.Version, in.Revision, in.GoVersion, in.Containerd)

	for _, r := range c.src.Checks() {
		gauge(c.checkOK, b2f(r.Status.Passed()), r.Name)
		for _, s := range []checks.Status{checks.OK, checks.Warn, checks.Fail, checks.Skip} {
			gauge(c.checkStatus, b2f(r.Status == s), r.Name, string(s))
		}
	}

	pods, err := c.src.Pods()
	if err != nil {
		c.readErrors.Add(1)
		c.log.Warn("reading pod stats", "error", err)
	}
	gauge(c.pods, float64(len(pods)))
	for key, p := range pods {
		ctrdNS, sandbox, _ := strings.Cut(key, "/")
		pl := []string{p.Namespace, p.Name, p.UID, ctrdNS, sandbox}
		gauge(c.podInfo, 1, pl...)
		gauge(c.statsTime, float64(p.Time.UnixNano())/1e9, pl...)
		for id, ct := range p.Containers {
			if ct.Type == podstats.ContainerTypeSandbox {
				continue // the pause container is the pod, not one of its containers
			}
			cl := append(append([]string{}, pl...), ct.Name, id)
			gauge(c.stdioLimit, float64(ct.Stdio.RateBytesPerSec), cl...)
			counter(c.stdioBytes, float64(ct.Stdio.BytesForwarded), cl...)
			counter(c.stdioWaits, float64(ct.Stdio.Waits), cl...)
			counter(c.stdioWait, ct.Stdio.WaitTime.Seconds(), cl...)
			if rf := ct.Rootfs; rf != nil {
				dir := func(d string) []string { return append(append([]string{}, cl...), d) }
				gauge(c.rootfsLimitBytes, float64(rf.Limits.ReadBps), dir("read")...)
				gauge(c.rootfsLimitBytes, float64(rf.Limits.WriteBps), dir("write")...)
				gauge(c.rootfsLimitOps, float64(rf.Limits.ReadIOPS), dir("read")...)
				gauge(c.rootfsLimitOps, float64(rf.Limits.WriteIOPS), dir("write")...)
				if io := rf.IO; io != nil {
					counter(c.rootfsBytes, float64(io.ReadBytes), dir("read")...)
					counter(c.rootfsBytes, float64(io.WriteBytes), dir("write")...)
					counter(c.rootfsIOs, float64(io.ReadIOs), dir("read")...)
					counter(c.rootfsIOs, float64(io.WriteIOs), dir("write")...)
				}
			}
		}
		if l := p.Logs; l != nil {
			gauge(c.logFiles, float64(l.Files), pl...)
			counter(c.logFilesOpened, float64(l.FilesTotal), pl...)
			counter(c.logRecords, float64(l.Lines), pl...)
			counter(c.logBytes, float64(l.Bytes), pl...)
			counter(c.logSplit, float64(l.SplitLines), pl...)
			counter(c.logDrop, float64(l.DroppedLines), pl...)
			counter(c.logSinkErrors, float64(l.SinkErrors), pl...)
			counter(c.logTruncations, float64(l.Truncations), pl...)
			gauge(c.logLag, float64(l.LagBytes), pl...)
			last := 0.0
			if !l.LastDelivery.IsZero() {
				last = float64(l.LastDelivery.UnixNano()) / 1e9
			}
			gauge(c.logLastDelivery, last, pl...)
			for reason, n := range l.Skipped {
				counter(c.logSkipped, float64(n), append(append([]string{}, pl...), reason)...)
			}
		}
	}
	if allocs, err := c.src.GPUAllocations(); err != nil {
		c.readErrors.Add(1)
		c.log.Warn("reading gpu ledger", "error", err)
	} else {
		n := 0
		for _, a := range allocs {
			n += len(a.Devices)
		}
		gauge(c.gpusAllocated, float64(n))
	}
	counter(c.statsErrors, float64(c.readErrors.Load()))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
