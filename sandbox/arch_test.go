package sandbox

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

// elfHeader returns a 20-byte little-endian ELF64 header for machine m.
func elfHeader(m uint16) []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF\x02\x01\x01")
	h[18], h[19] = byte(m), byte(m>>8)
	return h
}

func TestCheckELF(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []byte
		host   string
		want   string
	}{
		{"same", elfHeader(62), "amd64", ""},
		{"arm64 on amd64", elfHeader(183), "amd64", `container "app": image architecture arm64 does not match host architecture amd64 (entrypoint /bin/app is an ELF aarch64 binary)`},
		{"amd64 on arm64", elfHeader(62), "arm64", `container "app": image architecture amd64 does not match host architecture arm64 (entrypoint /bin/app is an ELF x86-64 binary)`},
		{"386 on amd64", elfHeader(3), "amd64", ""},
		{"script", []byte("#!/bin/sh\necho hello world\n"), "amd64", ""},
		{"unknown machine", elfHeader(9999), "amd64", ""},
		{"short", []byte("\x7fELF"), "amd64", ""},
	} {
		err := checkELF("app", "/bin/app", tc.header, tc.host)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want || !errors.Is(err, errdefs.ErrFailedPrecondition)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
