package logfwd

import (
	"maps"
	"sync"
	"time"
)

// Stats is a snapshot of one collector's counters for the node agent.
type Stats struct {
	Files          int               `json:"files"`           // files followed now
	FilesTotal     uint64            `json:"files_total"`     // files ever started
	Lines          uint64            `json:"lines"`           // records delivered (parts count once each)
	Bytes          uint64            `json:"bytes"`           // line bytes delivered
	SplitLines     uint64            `json:"split_lines"`     // lines over the limit, split (R19)
	DroppedLines   uint64            `json:"dropped_lines"`   // lines over the limit, dropped (R19)
	FlushedPartial uint64            `json:"flushed_partial"` // last lines flushed without newline
	Truncations    uint64            `json:"truncations"`     // truncations / content replacements seen
	NulBytes       uint64            `json:"nul_bytes"`       // NUL bytes removed from records, holes skipped included (nul.go)
	NulLines       uint64            `json:"nul_lines"`       // lines of nothing but NUL bytes, not forwarded
	Skipped        map[string]uint64 `json:"skipped"`         // files skipped, by reason (Skip*)
	SinkErrors     uint64            `json:"sink_errors"`     // failed delivery attempts
	LagBytes       int64             `json:"lag_bytes"`       // bytes written but not yet delivered, at last look
	LastDelivery   time.Time         `json:"last_delivery"`   // when a sink last accepted records
}

// statsBox guards a Stats; safe for concurrent use.
type statsBox struct {
	mu sync.Mutex
	s  Stats // guarded by mu
}

func (b *statsBox) add(f func(*Stats)) {
	b.mu.Lock()
	f(&b.s)
	b.mu.Unlock()
}

func (b *statsBox) skip(reason string) {
	b.add(func(s *Stats) {
		if s.Skipped == nil {
			s.Skipped = map[string]uint64{}
		}
		s.Skipped[reason]++
	})
}

func (b *statsBox) snapshot() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.s
	s.Skipped = maps.Clone(b.s.Skipped)
	return s
}
