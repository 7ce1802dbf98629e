package logfwd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// fwdEntry is one decoded Forward entry.
type fwdEntry struct {
	tag  string
	time time.Time
	rec  map[string]any
}

// receiver is a Fluent Forward endpoint for tests: it decodes
// PackedForward messages with the msgpack library, checks the EventTime
// extension, answers acks, and records entries once per chunk id.
type receiver struct {
	t    *testing.T
	addr string

	mu        sync.Mutex
	ln        net.Listener
	conns     map[net.Conn]bool
	chunks    map[string]bool
	entries   []fwdEntry
	resent    int
	maxChunkB int
	// stallAfter > 0: only that many chunks are acknowledged (and
	// recorded); later ones are read and never answered, as by an endpoint
	// that hangs. unacked counts those.
	stallAfter int
	acked      int
	unacked    int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, conns: map[net.Conn]bool{}, chunks: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *receiver) serve(ln net.Listener) {
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

// down closes the listener and every connection.
func (r *receiver) down() {
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

// up listens again on the same address.
func (r *receiver) up() {
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.serve(ln)
}

func (r *receiver) handle(c net.Conn) {
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

func decodeEntries(tag string, bin []byte) ([]fwdEntry, error) {
	d := msgpack.NewDecoder(bytes.NewReader(bin))
	var out []fwdEntry
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
		out = append(out, fwdEntry{tag: tag, time: t, rec: rec})
	}
}

func (r *receiver) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.entries {
		out = append(out, e.rec["log"].(string))
	}
	return out
}

func forwardEnv(t *testing.T, r *receiver, mod func(*Config)) *env {
	e := newEnv(t, "*.log", func(c *Config) {
		c.Watches[0].Destination = DestinationForward
		c.Watches[0].Tag = "app.tag"
		c.FileSink = nil
		c.Forward = &ForwardConfig{Address: "tcp://" + r.addr, RequireAck: true,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, AckTimeout: 2 * time.Second}
		if mod != nil {
			mod(c)
		}
	})
	return e
}

// startForward starts e's collector with its real Forward sink.
func (e *env) startForward() {
	e.sink = &memSink{} // unused: the forward sink is not injected
	e.start()
}

func TestForwardDelivers(t *testing.T) {
	r := newReceiver(t)
	e := forwardEnv(t, r, nil)
	e.startForward()
	want := seq("fwd", 1, 2000)
	e.write("a.log", want...)
	waitFor(10*time.Second, func() bool { return len(r.lines()) >= len(want) })
	time.Sleep(100 * time.Millisecond)
	if err := sameMultiset(r.lines(), want); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	ent := r.entries[0]
	r.mu.Unlock()
	if ent.tag != "app.tag" || ent.rec["namespace"] != "ns" || ent.rec["pod"] != "pod" || ent.rec["pod_uid"] != "uid-1" ||
		ent.rec["container"] != "app" || ent.rec["path"] != "/var/log/app/a.log" || time.Since(ent.time) > time.Minute {
		t.Errorf("entry %+v", ent)
	}
}

// TestForwardEndpointOutage: the endpoint is down for a while, then
// returns; every line arrives once (per chunk id), batches stay bounded.
// The outage is 30 s as in the issue unless -short (3 s).
func TestForwardEndpointOutage(t *testing.T) {
	outage := 30 * time.Second
	if testing.Short() {
		outage = 3 * time.Second
	}
	if s := os.Getenv("LOGFWD_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		outage = d
	}
	t.Parallel()
	r := newReceiver(t)
	e := forwardEnv(t, r, func(c *Config) { c.MaxBatchBytes = 32 << 10 })
	e.startForward()
	first := seq("before", 1, 500)
	e.write("a.log", first...)
	waitFor(5*time.Second, func() bool { return len(r.lines()) >= len(first) })
	r.down()
	during := seq("during", 1, 20000)
	start := time.Now()
	for i := 0; i < 10; i++ { // written while the endpoint is down
		e.write("a.log", during[i*2000:(i+1)*2000]...)
		time.Sleep(outage / 20)
	}
	time.Sleep(outage - time.Since(start))
	if s := e.c.Stats(); s.SinkErrors == 0 {
		t.Errorf("no sink errors during the outage")
	}
	r.up()
	want := concat(first, during)
	if !waitFor(30*time.Second, func() bool { return len(r.lines()) >= len(want) }) {
		t.Fatalf("after recovery got %d of %d lines", len(r.lines()), len(want))
	}
	time.Sleep(200 * time.Millisecond)
	if err := sameMultiset(r.lines(), want); err != nil {
		t.Fatal(err)
	}
	if r.maxChunkB > 2*(32<<10)+4096 {
		t.Errorf("a chunk of %d bytes: batches are not bounded", r.maxChunkB)
	}
	t.Logf("outage %v: %d resent chunks deduplicated by chunk id", outage, r.resent)
}

// TestForwardUnixSocket: the same protocol over a unix socket.
func TestForwardUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fwd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, conns: map[net.Conn]bool{}, chunks: map[string]bool{}, addr: sock}
	r.serve(ln)
	t.Cleanup(r.down)
	e := forwardEnv(t, r, func(c *Config) { c.Forward.Address = "unix://" + sock })
	e.startForward()
	e.write("a.log", "over unix")
	waitFor(5*time.Second, func() bool { return len(r.lines()) >= 1 })
	if err := sameMultiset(r.lines(), []string{"over unix"}); err != nil {
		t.Fatal(err)
	}
}
