package logfwd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// forwardSink speaks the Fluent Forward protocol (v1): one PackedForward
// message [tag, bin(entries), {"size", "chunk"}] per tag, each entry
// [EventTime, record], EventTime being msgpack ext type 0 (uint32 seconds,
// uint32 nanoseconds, big endian). With RequireAck it waits for {"ack":
// chunk} and resends the same message (same chunk id) on any failure, so
// delivery is at-least-once; with the checkpoint taken after the ack a
// duplicate can only arise if the collector dies between ack and checkpoint.
type forwardSink struct {
	cfg   ForwardConfig
	pod   PodIdentity
	log   *slog.Logger
	stats *statsBox

	conn    net.Conn
	dec     *msgpack.Decoder
	backoff time.Duration
}

func newForwardSink(cfg ForwardConfig, pod PodIdentity, log *slog.Logger, st *statsBox) (*forwardSink, error) {
	if _, _, err := splitAddress(cfg.Address); err != nil {
		return nil, err
	}
	return &forwardSink{cfg: cfg, pod: pod, log: log, stats: st}, nil
}

func splitAddress(a string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(a, "tcp://"):
		return "tcp", strings.TrimPrefix(a, "tcp://"), nil
	case strings.HasPrefix(a, "unix://"):
		return "unix", strings.TrimPrefix(a, "unix://"), nil
	}
	return "", "", fmt.Errorf("forward address %q: want tcp://host:port or unix:///path", a)
}

// Send delivers recs, retrying with backoff until every message is accepted
// or ctx is done. Memory is bounded by the batch: nothing else is buffered.
func (s *forwardSink) Send(ctx context.Context, recs []Record) error {
	msgs, err := s.encode(recs)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		for {
			err := s.sendOne(ctx, m)
			if err == nil {
				s.backoff = 0
				break
			}
			s.closeConn()
			s.stats.add(func(st *Stats) { st.SinkErrors++ })
			if ctx.Err() != nil {
				return fmt.Errorf("forward: %w", ctx.Err())
			}
			s.backoff = min(max(2*s.backoff, s.cfg.MinBackoff), s.cfg.MaxBackoff)
			s.log.Debug("forward send failed; retrying", "error", err, "backoff", s.backoff)
			t := time.NewTimer(s.backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("forward: %w", ctx.Err())
			case <-t.C:
			}
		}
	}
	return nil
}

type fwdMessage struct {
	chunk string
	data  []byte
}

func (s *forwardSink) encode(recs []Record) ([]fwdMessage, error) {
	byTag := map[string][]int{}
	var order []string
	for i := range recs {
		t := recs[i].Tag
		if t == "" {
			t = s.cfg.Tag
		}
		if _, ok := byTag[t]; !ok {
			order = append(order, t)
		}
		byTag[t] = append(byTag[t], i)
	}
	var out []fwdMessage
	var entries bytes.Buffer
	enc := msgpack.NewEncoder(&entries)
	for _, tag := range order {
		entries.Reset()
		for _, i := range byTag[tag] {
			if err := encodeEntry(enc, s.pod, &recs[i]); err != nil {
				return nil, fmt.Errorf("encode forward entry: %w", err)
			}
		}
		var msg bytes.Buffer
		me := msgpack.NewEncoder(&msg)
		id := make([]byte, 16)
		rand.Read(id)
		chunk := base64.StdEncoding.EncodeToString(id)
		n := 2
		if s.cfg.RequireAck {
			n = 3
		}
		err := me.EncodeArrayLen(n)
		err = firstErr(err, me.EncodeString(tag), me.EncodeBytes(entries.Bytes()))
		if s.cfg.RequireAck {
			err = firstErr(err, me.EncodeMapLen(2), me.EncodeString("size"), me.EncodeInt(int64(len(byTag[tag]))),
				me.EncodeString("chunk"), me.EncodeString(chunk))
		}
		if err != nil {
			return nil, fmt.Errorf("encode forward message: %w", err)
		}
		out = append(out, fwdMessage{chunk: chunk, data: msg.Bytes()})
	}
	return out, nil
}

func encodeEntry(e *msgpack.Encoder, pod PodIdentity, r *Record) error {
	var ts [8]byte
	binary.BigEndian.PutUint32(ts[:4], uint32(r.Time.Unix()))
	binary.BigEndian.PutUint32(ts[4:], uint32(r.Time.Nanosecond()))
	n := 7
	if r.Partial {
		n += 3
	}
	err := firstErr(e.EncodeArrayLen(2), e.EncodeExtHeader(0, 8))
	if err == nil {
		_, err = e.Writer().Write(ts[:])
	}
	err = firstErr(err, e.EncodeMapLen(n),
		e.EncodeString("namespace"), e.EncodeString(pod.Namespace),
		e.EncodeString("pod"), e.EncodeString(pod.Name),
		e.EncodeString("pod_uid"), e.EncodeString(pod.UID),
		e.EncodeString("container"), e.EncodeString(r.Container),
		e.EncodeString("path"), e.EncodeString(r.Path),
		e.EncodeString("read_time"), e.EncodeString(r.Time.UTC().Format(time.RFC3339Nano)),
		e.EncodeString("log"), e.EncodeString(r.Line))
	if r.Partial {
		err = firstErr(err, e.EncodeString("partial"), e.EncodeBool(true),
			e.EncodeString("partial_index"), e.EncodeInt(int64(r.PartIndex)),
			e.EncodeString("partial_last"), e.EncodeBool(r.PartLast))
	}
	return err
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (s *forwardSink) sendOne(ctx context.Context, m fwdMessage) error {
	if s.conn == nil {
		network, addr, _ := splitAddress(s.cfg.Address)
		d := net.Dialer{Timeout: s.cfg.DialTimeout}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return fmt.Errorf("dial forward endpoint: %w", err)
		}
		s.conn = c
		s.dec = msgpack.NewDecoder(c)
	}
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Now()) })
	defer stop()
	s.conn.SetDeadline(time.Now().Add(s.cfg.AckTimeout))
	if _, err := s.conn.Write(m.data); err != nil {
		return fmt.Errorf("write forward message: %w", err)
	}
	if !s.cfg.RequireAck {
		return nil
	}
	resp, err := s.dec.DecodeMap()
	if err != nil {
		return fmt.Errorf("read forward ack: %w", err)
	}
	if ack, _ := resp["ack"].(string); ack != m.chunk {
		return fmt.Errorf("forward ack %q does not match chunk %q", ack, m.chunk)
	}
	return nil
}

func (s *forwardSink) closeConn() {
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.dec = nil, nil
	}
}

func (s *forwardSink) Close() error {
	s.closeConn()
	return nil
}
