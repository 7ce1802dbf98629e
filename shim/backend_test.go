package shim

import (
	"testing"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/v2/pkg/protobuf/proto"
)

func TestParseStartResponse(t *testing.T) {
	pb, _ := proto.Marshal(&bootapi.BootstrapResult{Version: 3, Address: "unix:///run/s/abc", Protocol: "ttrpc"})
	for _, tc := range []struct {
		name    string
		out     []byte
		addr    string
		version int32
		wantErr bool
	}{
		{"containerd 2.4 protobuf", pb, "unix:///run/s/abc", 3, false},
		{"containerd 2.0 JSON", []byte(`{"version":3,"address":"unix:///run/s/j","protocol":"ttrpc"}` + "\n"), "unix:///run/s/j", 3, false},
		{"legacy bare address (Kata)", []byte("unix:///run/containerd/s/kata\n"), "unix:///run/containerd/s/kata", 2, false},
		{"nothing", []byte("  \n"), "", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := parseStartResponse(tc.out)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", res)
				}
				return
			}
			if err != nil || res.Address != tc.addr || res.Version != tc.version || res.Protocol != "ttrpc" {
				t.Fatalf("got %v, %v; want %s v%d ttrpc", res, err, tc.addr, tc.version)
			}
		})
	}
}

func TestInterposable(t *testing.T) {
	for path, want := range map[string]bool{
		"/run/containerd/fifo/1/c-stdout": true,
		"fifo:///run/x":                   true,
		"":                                false,
		"binary:///usr/bin/logger?x=1":    false,
		"file:///var/log/c.log":           false,
	} {
		if got := interposable(path); got != want {
			t.Errorf("interposable(%q) = %v, want %v", path, got, want)
		}
	}
}
