package logfwd

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestSinkFileName(t *testing.T) {
	got, err := SinkFileName("k8s.io", "0123abcd")
	if err != nil || got != "k8s.io+0123abcd.jsonl" {
		t.Fatalf("SinkFileName = %q, %v", got, err)
	}
	// The separator cannot occur in either part: no two pairs share a name.
	a, _ := SinkFileName("a_b", "c")
	b, _ := SinkFileName("a", "b_c")
	if a == b {
		t.Errorf("(a_b, c) and (a, b_c) both map to %q", a)
	}
	for _, bad := range [][2]string{
		{"", "x"}, {"x", ""}, {"..", "x"}, {"x", ".."}, {"x", "../etc/passwd"}, {"a/b", "x"},
		{"x", "a+b"}, {"x", "a\x00b"}, {"x", strings.Repeat("a", 77)}, {"x", ".hidden"},
	} {
		if name, err := SinkFileName(bad[0], bad[1]); err == nil {
			t.Errorf("SinkFileName(%q, %q) = %q; want an error", bad[0], bad[1], name)
		} else if !strings.Contains(err.Error(), "identifier") {
			t.Errorf("SinkFileName(%q, %q): %v; want the allowed form named", bad[0], bad[1], err)
		}
	}
}

// TestSinksTwoNamespaces (issue 9 item 11): two pods with the same sandbox
// id in two containerd namespaces write 200 lines each into one sink
// directory; each sink holds its own 200 lines, none lost, none mixed.
func TestSinksTwoNamespaces(t *testing.T) {
	sinkDir := t.TempDir()
	type pod struct {
		ns   string
		cfg  Config
		want []string
	}
	var pods []pod
	for _, ns := range []string{"k8s.io", "default"} {
		name, err := SinkFileName(ns, "same-sandbox-id")
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, "*.log", func(c *Config) {
			c.Pod = PodIdentity{Namespace: "tenant", Name: "web", UID: "same-uid"} // identical tenant names too
			c.FileSink = &FileSinkConfig{Dir: sinkDir, Name: name}
		})
		want := seq(ns, 1, 200)
		e.write("a.log", want...)
		pods = append(pods, pod{ns: ns, cfg: e.cfg, want: want})
	}
	for _, p := range pods {
		c, err := New(p.cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(sinkDir)
	if len(entries) != 2 {
		t.Fatalf("sink dir holds %d files, want 2", len(entries))
	}
	for _, p := range pods {
		path := filepath.Join(sinkDir, p.cfg.FileSink.Name)
		if err := sameMultiset(sinkLines(t, path), p.want); err != nil {
			t.Errorf("namespace %s: %v", p.ns, err)
		}
	}
}

// TestSinkOpenRefusesPlanted: a symlink, a hard link or a FIFO at the sink
// name is refused with an error saying what is required, and the file a
// symlink points at is not touched; a name that is not one component is
// refused by the config check.
func TestSinkOpenRefusesPlanted(t *testing.T) {
	sinkDir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(victim, []byte("host data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plant := map[string]func(string) error{
		"symlink":   func(p string) error { return os.Symlink(victim, p) },
		"hard link": func(p string) error { return os.Link(victim, p) },
		"FIFO":      func(p string) error { return syscall.Mkfifo(p, 0o644) },
	}
	for what, mk := range plant {
		name := strings.ReplaceAll(what, " ", "") + ".jsonl"
		if err := mk(filepath.Join(sinkDir, name)); err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, "*.log", func(c *Config) { c.FileSink = &FileSinkConfig{Dir: sinkDir, Name: name} })
		e.write("a.log", "secret")
		c, err := New(e.cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			c.Drain(context.Background())
			t.Errorf("%s at the sink name: accepted", what)
			continue
		}
		if !strings.Contains(err.Error(), "required") {
			t.Errorf("%s: error %q does not say what is required", what, err)
		}
		t.Logf("%s: %v", what, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "host data\n" {
		t.Errorf("the host file was changed: %q", b)
	}
	for _, name := range []string{"../escape.jsonl", "a/b.jsonl", "..", ""} {
		e := newEnv(t, "*.log", func(c *Config) { c.FileSink = &FileSinkConfig{Dir: sinkDir, Name: name} })
		if _, err := New(e.cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "one file name") {
			t.Errorf("sink name %q: %v; want a refusal", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(sinkDir), "escape.jsonl")); err == nil {
		t.Error("a sink was created outside the sink dir")
	}
}

// TestSinkConfigJSON: the config the shim persists for the delete
// subcommand round-trips with Dir and Name.
func TestSinkConfigJSON(t *testing.T) {
	in := FileSinkConfig{Dir: "/var/log/cci-shim", Name: "k8s.io+abc.jsonl"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out FileSinkConfig
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Fatalf("round trip %s: %+v, %v", b, out, err)
	}
}
