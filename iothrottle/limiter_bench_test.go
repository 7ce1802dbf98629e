package iothrottle

import (
	"context"
	"io"
	"os"
	"testing"
)

// memSource returns len(p) bytes per Read until left is used up and implements no
// WriterTo; memSink is the same for writes. Copying between them measures
// the loop's own overhead, the worst case relative to real I/O.
type memSource struct{ left int }

func (s *memSource) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), s.left)
	s.left -= n
	return n, nil
}

type memSink struct{}

func (memSink) Write(p []byte) (int, error) { return len(p), nil }

const benchBytes = 1 << 20

// plainLoop is the baseline: a bare read/write loop with a reused buffer.
func plainLoop(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		nr, err := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if err != nil {
			if err == io.EOF {
				return n, nil
			}
			return n, err
		}
	}
}

func benchCopy(b *testing.B, copyFn func(dst io.Writer, src io.Reader, buf []byte) (int64, error)) {
	buf := make([]byte, DefaultBufferSize)
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	src := &memSource{}
	for b.Loop() {
		src.left = benchBytes
		if _, err := copyFn(memSink{}, src, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlainLoop(b *testing.B) { benchCopy(b, plainLoop) }

func BenchmarkCopyUnthrottled(b *testing.B) {
	l := NewLimiter(0)
	ctx := context.Background()
	benchCopy(b, func(dst io.Writer, src io.Reader, buf []byte) (int64, error) { return l.Copy(ctx, dst, src, buf) })
}

// BenchmarkCopyThrottledNoWait measures the reservation cost per chunk at a
// rate high enough never to wait.
func BenchmarkCopyThrottledNoWait(b *testing.B) {
	l := NewLimiter(1 << 50)
	ctx := context.Background()
	benchCopy(b, func(dst io.Writer, src io.Reader, buf []byte) (int64, error) { return l.Copy(ctx, dst, src, buf) })
}

// Pipe benchmarks: the shim's real case (FIFO in, FIFO out).
func benchPipe(b *testing.B, copyFn func(dst io.Writer, src io.Reader, buf []byte) (int64, error)) {
	inR, inW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	go func() { _, _ = plainLoop(io.Discard, outR, make([]byte, 64<<10)) }()
	done := make(chan error, 1)
	go func() {
		_, err := copyFn(outW, inR, make([]byte, DefaultBufferSize))
		done <- err
	}()
	chunk := make([]byte, DefaultBufferSize)
	b.SetBytes(benchBytes)
	b.ReportAllocs()
	for b.Loop() {
		for sent := 0; sent < benchBytes; sent += len(chunk) {
			if _, err := inW.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	}
	inW.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	outW.Close()
	inR.Close()
}

func BenchmarkPipePlainLoop(b *testing.B) { benchPipe(b, plainLoop) }

func BenchmarkPipeCopyUnthrottled(b *testing.B) {
	l := NewLimiter(0)
	benchPipe(b, func(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
		return l.Copy(context.Background(), dst, src, buf)
	})
}
