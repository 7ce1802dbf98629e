package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestIntercept(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		done     bool
		wantHead string
	}{
		{[]string{"-v"}, true, "containerd-shim-cci-v2 (cci-shim) "},
		{[]string{"--version"}, true, "containerd-shim-cci-v2 (cci-shim) "},
		{[]string{"-namespace", "k8s.io", "-v"}, true, "containerd-shim-cci-v2 (cci-shim) "},
		{[]string{"--help"}, true, "containerd-shim-cci-v2 — the cci runtime"},
		{[]string{"-h"}, true, "containerd-shim-cci-v2 — the cci runtime"},
		// containerd's own invocations go to the harness.
		{[]string{"-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock", "-publish-binary", "/usr/bin/containerd", "-id", "abc", "start"}, false, ""},
		{[]string{"-namespace", "default", "-id", "abc", "-bundle", "/b", "delete"}, false, ""},
		{[]string{"-info"}, false, ""},
		{[]string{"--frobnicate"}, false, ""}, // the harness reports it
	} {
		var out bytes.Buffer
		code, done := intercept(append([]string{"/usr/local/bin/containerd-shim-cci-v2"}, tc.args...), &out)
		if done != tc.done || code != 0 {
			t.Errorf("%v: done=%v code=%d, want done=%v", tc.args, done, code, tc.done)
		}
		if !strings.HasPrefix(out.String(), tc.wantHead) || (!tc.done && out.Len() > 0) {
			t.Errorf("%v: output %q, want it to start with %q", tc.args, out.String(), tc.wantHead)
		}
		if tc.done && strings.Count(out.String(), "\n") < 3 {
			t.Errorf("%v: output too short: %q", tc.args, out.String())
		}
	}
}
