package logfwd

import "time"

// Measurement API for ccibench `logs` (R23, issue 14) and the package's
// benchmarks: MeasureThroughput (collector throughput per core),
// MeasureLatency (write->sink latency percentiles, with inotify or the
// poll only) and Config.Observer. They drive the real collector and the
// real sinks; nothing is stubbed.

// Throughput is one MeasureThroughput run.
type Throughput struct {
	Lines     uint64        // records delivered
	Bytes     uint64        // input bytes delivered: line bytes plus one newline per record
	SinkBytes int64         // bytes the file sink grew by (0 for Forward)
	Wall      time.Duration // New + Drain
	CPU       time.Duration // user + system CPU time of the whole process over Wall
}

// MBPerSecond is input MB (10^6 bytes) per second of wall time.
func (t Throughput) MBPerSecond() float64 { return float64(t.Bytes) / 1e6 / t.Wall.Seconds() }

// MBPerCPUSecond is input MB per second of CPU time: the collector's
// throughput per core.
func (t Throughput) MBPerCPUSecond() float64 { return float64(t.Bytes) / 1e6 / t.CPU.Seconds() }

// Latency is one MeasureLatency run. Percentiles are over delivered lines.
type Latency struct {
	Lines     int // lines written
	Delivered int // lines the sink accepted before the end
	P50, P99  time.Duration
	Max       time.Duration
}
