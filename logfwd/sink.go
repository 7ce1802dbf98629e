package logfwd

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/pkg/identifiers"
)

// SinkFileName is the file sink's name for a pod: "<containerd
// namespace>+<sandbox id>.jsonl". Sinks are keyed by what containerd
// validated, never by a tenant's pod name, namespace or UID (those appear
// only inside the records). Both parts must be containerd identifiers
// (letters and digits, single '.', '_' or '-' between them, at most 76
// bytes), which contain no '+' or '/', so two pods with the same sandbox id
// in two containerd namespaces get two files and no name leaves the sink
// directory.
func SinkFileName(namespace, sandboxID string) (string, error) {
	if err := identifiers.Validate(namespace); err != nil {
		return "", fmt.Errorf("containerd namespace %q: a containerd identifier is required: %w", namespace, err)
	}
	if err := identifiers.Validate(sandboxID); err != nil {
		return "", fmt.Errorf("sandbox id %q: a containerd identifier is required: %w", sandboxID, err)
	}
	return namespace + "+" + sandboxID + ".jsonl", nil
}

// Record is one line (or one part of a long line) read from a file.
type Record struct {
	Time      time.Time // when the collector read it
	Container string
	Path      string // full container path of the file when read
	Tag       string // forward tag (policy tag or node default)
	Line      string // without the newline
	// Partial marks a part of a line that was split (over the line limit)
	// or flushed without its newline; PartIndex counts parts from 0 and
	// PartLast marks the part that ended with the newline.
	Partial   bool
	PartIndex int
	PartLast  bool
}

// Sink accepts batches of records. Send returns nil only once the records
// are accepted (acknowledged, or synced; a positioned sink's are written
// and synced by Sync before the checkpoint); it may retry inside until ctx
// is done.
type Sink interface {
	Send(ctx context.Context, recs []Record) error
	Close() error
}

// positioned is implemented by sinks whose accepted state is a byte position
// that the checkpoint records, so that a restart can drop records written
// after the last checkpoint (exactly-once for the file sink). Their Send
// only writes; Sync makes what was written durable and runs before every
// checkpoint, so that no checkpoint survives a power loss that its sink
// position did not.
type positioned interface {
	Position() int64
	Restore(pos int64) error
	Sync() error
}

// fileSink appends JSON lines to a local file.
type fileSink struct {
	f   *os.File
	pod PodIdentity
	pos int64 // guarded by the collector lock
	buf []byte
}

var _ positioned = (*fileSink)(nil)

// Send encodes recs as JSON lines and writes them.
func (s *fileSink) Send(ctx context.Context, recs []Record) error {
	b := s.buf[:0]
	var head jsonHeadCache
	for i := range recs {
		ts := s.AppendTime(nil, recs[i].Time)
		b = s.AppendRecord(b, ts, &head, &recs[i], nil)
	}
	s.buf = b
	return s.SendEncoded(ctx, b)
}

// AppendTime formats t as the time field's value.
func (s *fileSink) AppendTime(b []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(b, time.RFC3339Nano)
}

// AppendRecord appends one JSON line for r; line (nil: r.Line) is the
// text and ts the time, formatted by AppendTime. The collector encodes
// lines into its batch with it as it reads them (no Record, no allocation
// per line) and hands the batch to SendEncoded.
func (s *fileSink) AppendRecord(b []byte, ts []byte, head *jsonHeadCache, r *Record, line []byte) []byte {
	b = append(b, `{"time":"`...)
	b = append(b, ts...)
	b = append(b, head.get(s.pod, r.Container, r.Path)...)
	if line != nil {
		b = appendJSONString(b, line)
	} else {
		b = appendJSONString(b, r.Line)
	}
	if r.Partial {
		b = append(b, `,"partial":true,"partial_index":`...)
		b = strconv.AppendInt(b, int64(r.PartIndex), 10)
		b = append(b, `,"partial_last":`...)
		b = strconv.AppendBool(b, r.PartLast)
	}
	return append(b, "}\n"...)
}

// SendEncoded writes b, JSON lines encoded by AppendRecord, after what
// was written before; Sync (before the checkpoint) makes it durable.
func (s *fileSink) SendEncoded(ctx context.Context, b []byte) error {
	if _, err := s.f.WriteAt(b, s.pos); err != nil {
		return fmt.Errorf("write file sink: %w", err)
	}
	s.pos += int64(len(b))
	return nil
}

// Sync makes everything written durable. It may run concurrently with
// Send (from the checkpoint writer).
func (s *fileSink) Sync() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync file sink: %w", err)
	}
	return nil
}

func (s *fileSink) Position() int64 { return s.pos }

// Restore drops anything written after pos (records sent but not
// checkpointed before a crash; they will be read and written again).
func (s *fileSink) Restore(pos int64) error {
	if pos > s.pos {
		return nil // the sink was truncated by someone else; keep appending
	}
	if err := s.f.Truncate(pos); err != nil {
		return fmt.Errorf("truncate file sink: %w", err)
	}
	s.pos = pos
	return nil
}

func (s *fileSink) Close() error { return s.f.Close() }
