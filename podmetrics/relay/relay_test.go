package relay

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range [][]byte{[]byte("GET /metrics HTTP/1.1\r\n\r\n"), {}, bytes.Repeat([]byte("x"), MaxRequest)} {
		if err := WriteFrame(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []int{25, 0, MaxRequest} {
		got, err := ReadFrame(&buf, MaxRequest)
		if err != nil || len(got) != want {
			t.Fatalf("ReadFrame = %d bytes, %v; want %d", len(got), err, want)
		}
	}
	if _, err := ReadFrame(&buf, MaxRequest); !errors.Is(err, io.EOF) {
		t.Errorf("ReadFrame at the end = %v; want EOF", err)
	}
	WriteFrame(&buf, make([]byte, MaxRequest+1))
	if _, err := ReadFrame(&buf, MaxRequest); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized frame: %v; want ErrTooLarge", err)
	}
	if _, err := ReadFrame(bytes.NewReader([]byte{0, 0, 0, 9, 'a'}), MaxRequest); err == nil {
		t.Error("truncated frame accepted")
	}
}
