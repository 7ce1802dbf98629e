// Package relay is the protocol between a pod's shim and the in-sandbox
// half of its metrics endpoint (SPEC R27), for sandboxes that own the pod's
// network interface (gVisor's netstack, Kata's guest): the relay
// cmd/cci-podmetrics (C, see its source for why) runs in the sandbox, accepts
// TCP connections on the metrics port and hands each request to the shim over
// its own stdin and stdout, where the shim answers (podmetrics.ServeRelay).
//
// The protocol is frames: a 4-byte big-endian length, then that many bytes.
// The relay sends one frame per connection holding the request head as
// received (request line and headers, at most MaxRequest bytes) and copies
// the frame it gets back, a complete HTTP/1.1 response, to the connection,
// then closes it. One request at a time: scrapes are rare.
//
// What it is not for: HTTP (the shim side uses net/http) or computing
// figures.
package relay

import (
	"errors"
	"io"
	"strconv"
)

// Frame size limits; cmd/cci-podmetrics/relay.c holds the same.
const (
	MaxRequest  = 8 << 10  // a request head
	MaxResponse = 32 << 20 // a response
)

// ErrTooLarge is a frame over its limit.
var ErrTooLarge = errors.New("relay: frame too large")

// WriteFrame writes b as one frame.
func WriteFrame(w io.Writer, b []byte) error {
	n := uint32(len(b))
	hdr := [4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	if _, err := w.Write(append(hdr[:], b...)); err != nil {
		return wrap("writing frame", err)
	}
	return nil
}

// FrameLen reads a frame's length and checks it against limit; the payload
// follows on r.
func FrameLen(r io.Reader, limit int) (int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := uint32(hdr[0])<<24 | uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3])
	if n > uint32(limit) {
		return 0, wrap(strconv.FormatUint(uint64(n), 10)+" bytes, limit "+strconv.Itoa(limit), ErrTooLarge)
	}
	return int(n), nil
}

// ReadFrame reads one frame of at most limit bytes.
func ReadFrame(r io.Reader, limit int) ([]byte, error) {
	n, err := FrameLen(r, limit)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, wrap("reading frame", err)
	}
	return b, nil
}

// wrapped is an error with context, without fmt.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return "relay: " + w.msg + ": " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func wrap(msg string, err error) error { return &wrapped{msg, err} }
