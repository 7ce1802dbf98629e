//go:build !linux

package logfwd

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

var errNotLinux = errors.New("logfwd: file log collection needs Linux (openat2, inotify)")

// Collector is unavailable off Linux.
type Collector struct{}

// New fails off Linux.
func New(Config, *slog.Logger) (*Collector, error) { return nil, errNotLinux }

// Run fails off Linux.
func (*Collector) Run(context.Context) error { return errNotLinux }

// Drain fails off Linux.
func (*Collector) Drain(context.Context) error { return errNotLinux }

// Close does nothing off Linux.
func (*Collector) Close() error { return nil }

// UpdateWatches fails off Linux.
func (*Collector) UpdateWatches(context.Context, []Watch) error { return errNotLinux }

// Stats is empty off Linux.
func (*Collector) Stats() Stats { return Stats{} }

// MeasureThroughput fails off Linux.
func MeasureThroughput(context.Context, Config) (Throughput, error) { return Throughput{}, errNotLinux }

// MeasureLatency fails off Linux.
func MeasureLatency(context.Context, Config, string, int, int, time.Duration) (Latency, error) {
	return Latency{}, errNotLinux
}
