package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunFlags(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"--help"}, 0, "--tls-cert-file FILE", ""},
		{[]string{"--version"}, 0, "cci-webhook (cci-shim) ", ""},
		{[]string{"--bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"--tls-cert-file", "c"}, 2, "", "--tls-cert-file and --tls-key-file are required"},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k", "--listen", "x"}, 2, "", `--listen "x" is not allowed`},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k", "--log-level", "loud"}, 2, "", `--log-level "loud" is not allowed`},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k", "--runtime-class", "cci,Bad_Name"}, 2, "", `--runtime-class "Bad_Name" is not a RuntimeClass name`},
		{[]string{"--tls-cert-file", "c", "--tls-key-file", "k", "--runtime-class", " , "}, 2, "", `--runtime-class is empty`},
		{[]string{"--tls-cert-file", "/nonexistent/c", "--tls-key-file", "/nonexistent/k", "--listen", "127.0.0.1:1"}, 1, "",
			"loading TLS certificate /nonexistent/c and key /nonexistent/k"},
	} {
		var out, errb bytes.Buffer
		code := Run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
			t.Errorf("Run(%q) = %d\nstdout %q\nstderr %q\nwant %d, stdout containing %q, stderr containing %q",
				tc.args, code, out.String(), errb.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}
