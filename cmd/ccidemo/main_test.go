package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// --help and --version print once and start nothing: no env dir appears.
func TestHelpHasNoSideEffects(t *testing.T) {
	before, _ := filepath.Glob("/tmp/cci-e2e-*")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "ccidemo — the demo behind make run."},
		{[]string{"-h"}, 0, "ccidemo — the demo behind make run."},
		{[]string{"--version"}, 0, "ccidemo (cci-shim) "},
		{[]string{"--frobnicate"}, 2, ""},
		{[]string{"extra"}, 2, ""},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.HasPrefix(out.String(), tc.out) || (tc.out != "" && strings.Count(out.String(), tc.out) != 1) {
			t.Errorf("%v: code %d, stdout %q, stderr %q", tc.args, code, out.String(), errOut.String())
		}
		if tc.code == 2 && !strings.Contains(errOut.String(), "--help") {
			t.Errorf("%v: no usage hint: %q", tc.args, errOut.String())
		}
	}
	after, _ := filepath.Glob("/tmp/cci-e2e-*")
	if len(after) > len(before) {
		t.Errorf("help started an env: %v", after)
	}
}
