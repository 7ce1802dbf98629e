// Package forwardtest is a Fluent Forward endpoint for tests: it decodes
// PackedForward messages with a real msgpack library, checks the EventTime
// extension, answers acks and records each chunk once. It can go down, come
// back and stall, as a Fluent Bit that restarts or hangs does.
//
// It is for tests only (logfwd's and the end-to-end suite's); no product
// code imports it.
package forwardtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// TB is the part of testing.TB the receiver uses.
type TB interface {
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatal(args ...any)
	Cleanup(func())
}

// Entry is one decoded Forward entry.
type Entry struct {
	Tag    string
	Time   time.Time
	Record map[string]any
}

// Receiver is a Forward endpoint on 127.0.0.1.
type Receiver struct {
	// Addr is host:port.
	Addr string
	t    TB

	mu        sync.Mutex
	ln        net.Listener
	conns     map[net.Conn]bool
	chunks    map[string]bool
	entries   []Entry
	resent    int
	maxChunkB int
	// stallAfter > 0: only that many chunks are acknowledged (and
	// recorded); later ones are read and never answered, as by an endpoint
	// that hangs. unacked counts those.
	stallAfter int
	acked      int
	unacked    int
}

// New starts a receiver on TCP; it goes down at the test's end.
func New(t TB) *Receiver {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, ln.Addr().String())
}

// NewUnix starts a receiver on a unix socket at path.
func NewUnix(t TB, path string) *Receiver {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, path)
}

func serveOn(t TB, ln net.Listener, addr string) *Receiver {
	r := &Receiver{t: t, Addr: addr, conns: map[net.Conn]bool{}, chunks: map[string]bool{}}
	r.serve(ln)
	t.Cleanup(r.Down)
	return r
}

func (r *Receiver) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns[c] = true
			r.mu.Unlock()
			go r.handle(c)
		}
	}()
}

// Down closes the listener and every connection.
func (r *Receiver) Down() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
	clear(r.conns)
}

// Up listens again on the same address (TCP receivers only).
func (r *Receiver) Up() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", r.Addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.serve(ln)
}

func (r *Receiver) handle(c net.Conn) {
	defer c.Close()
	dec := msgpack.NewDecoder(c)
	enc := msgpack.NewEncoder(c)
	for {
		n, err := dec.DecodeArrayLen()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.t.Logf("receiver: %v", err)
			}
			return
		}
		if n != 3 {
			r.t.Errorf("receiver: message of %d elements, want 3 (PackedForward with options)", n)
			return
		}
		tag, err1 := dec.DecodeString()
		bin, err2 := dec.DecodeBytes()
		opts, err3 := dec.DecodeMap()
		if err := errors.Join(err1, err2, err3); err != nil {
			r.t.Errorf("receiver: %v", err)
			return
		}
		chunk, _ := opts["chunk"].(string)
		ents, err := decodeEntries(tag, bin)
		if err != nil {
			r.t.Errorf("receiver: entries: %v", err)
			return
		}
		if fmt.Sprint(opts["size"]) != fmt.Sprint(len(ents)) {
			r.t.Errorf("receiver: size option %v, %d entries", opts["size"], len(ents))
		}
		r.mu.Lock()
		if r.stallAfter > 0 && r.acked >= r.stallAfter {
			r.unacked++
			r.mu.Unlock()
			continue
		}
		r.acked++
		if r.chunks[chunk] {
			r.resent++
		} else {
			r.chunks[chunk] = true
			r.entries = append(r.entries, ents...)
		}
		r.maxChunkB = max(r.maxChunkB, len(bin))
		r.mu.Unlock()
		if err := enc.Encode(map[string]string{"ack": chunk}); err != nil {
			return
		}
	}
}

func decodeEntries(tag string, bin []byte) ([]Entry, error) {
	d := msgpack.NewDecoder(bytes.NewReader(bin))
	var out []Entry
	for {
		n, err := d.DecodeArrayLen()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil || n != 2 {
			return nil, fmt.Errorf("entry array len %d: %v", n, err)
		}
		id, l, err := d.DecodeExtHeader()
		if err != nil || id != 0 || l != 8 {
			return nil, fmt.Errorf("EventTime ext: type %d len %d: %v", id, l, err)
		}
		var ts [8]byte
		if err := d.ReadFull(ts[:]); err != nil {
			return nil, err
		}
		rec, err := d.DecodeMap()
		if err != nil {
			return nil, err
		}
		t := time.Unix(int64(binary.BigEndian.Uint32(ts[:4])), int64(binary.BigEndian.Uint32(ts[4:])))
		out = append(out, Entry{Tag: tag, Time: t, Record: rec})
	}
}

// Lines returns the "log" field of every entry, in arrival order.
func (r *Receiver) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.entries {
		out = append(out, e.Record["log"].(string))
	}
	return out
}

// Entries returns the entries received so far.
func (r *Receiver) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Entry(nil), r.entries...)
}

// Resent is how many chunks came again after they were acknowledged.
func (r *Receiver) Resent() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resent
}

// MaxChunkBytes is the largest chunk's entries, in bytes.
func (r *Receiver) MaxChunkBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxChunkB
}

// StallAfter makes the receiver stop acknowledging after n chunks (0:
// never stall).
func (r *Receiver) StallAfter(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stallAfter = n
}

// Hang makes the receiver stop acknowledging from now on (it still reads),
// as an endpoint that hangs; StallAfter(0) ends it.
func (r *Receiver) Hang() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stallAfter = max(r.acked, 1)
}

// Unacked is how many chunks were read and never answered.
func (r *Receiver) Unacked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unacked
}
