package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, toml string
		want       []string // substrings of the error; ":" ones follow the path directly
	}{
		{"kind not set", "state_dir = \"/run/x\"\n", []string{`: backend.kind is not set`, `"kata", "gvisor", "runc"`}},
		{"type mismatch", "backend.kind = \"runc\"\n[throttle]\nstdio_bps = \"1MB\"\n",
			[]string{":3:13: throttle.stdio_bps: a TOML string where an integer is expected"}},
		{"unknown keys, each with its line", "backend.kind = \"runc\"\nstat_dir = \"/x\"\n[policy]\nvolume_dirr = \"/v\"\n",
			[]string{":2:1: unknown setting stat_dir; 4:1: unknown setting policy.volume_dirr"}},
		{"syntax", "backend.kind = \"runc\"\nstate_dir = \n", []string{":2:13: unexpected character"}},
		{"boolean", "backend.kind = \"runc\"\nbackend.debug = \"yes\"\n", []string{":2:17: backend.debug: a TOML string where a boolean (true or false) is expected"}},
		{"validation names the file", "backend.kind = \"runc\"\nstate_dir = \"run\"\n", []string{`: state_dir "run": must be an absolute path`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.toml)
			_, src, err := LoadSource(p)
			if err == nil {
				t.Fatal("no error")
			}
			if src.Path != p || src.From != "explicit" {
				t.Errorf("source = %+v", src)
			}
			for _, w := range tc.want {
				if strings.HasPrefix(w, ":") {
					w = p + w
				}
				if !strings.Contains(err.Error(), "node config "+p) || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q\nwant the path and %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvPath, "")
	// An explicitly named file, the variable's and the default path: all required.
	_, err := Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.toml (named explicitly)") {
		t.Fatalf("explicit: err = %v", err)
	}
	t.Setenv(EnvPath, filepath.Join(dir, "env.toml"))
	if _, err := Load(""); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "env.toml (from $CCI_SHIM_CONFIG)") {
		t.Fatalf("env: err = %v", err)
	}
	t.Setenv(EnvPath, "")
	if _, err := os.Stat(DefaultPath); err == nil {
		t.Skipf("%s exists on this host", DefaultPath)
	}
	_, src, err := LoadSource("")
	if !errors.Is(err, fs.ErrNotExist) || src != (Source{Path: DefaultPath, From: "default"}) ||
		!strings.Contains(err.Error(), "install packaging/cci-shim/config.toml") {
		t.Fatalf("default: src %+v, err = %v", src, err)
	}
}

func TestLoadSource(t *testing.T) {
	p := writeConfig(t, "backend.kind = \"runc\"\nstate_dir = \"/tmp/x\"\n")
	t.Setenv(EnvPath, p)
	c, src, err := LoadSource("")
	if err != nil {
		t.Fatal(err)
	}
	if src != (Source{Path: p, From: "$" + EnvPath}) || c.StateDir != "/tmp/x" || c.Backend.RuncRoot != "/tmp/x/runc" {
		t.Fatalf("src %+v, cfg %+v", src, c)
	}
}

// defaults is Default() as finished by Parse, flattened to dotted keys.
func defaults(t *testing.T) map[string]any {
	t.Helper()
	c := Default()
	if err := Parse(nil, &c); err != nil {
		t.Fatal(err)
	}
	m := flatten(t, c)
	m["gpu.drivers"] = map[string]any{} // an empty table is not marshalled
	return m
}

func flatten(t *testing.T, c Config) map[string]any {
	t.Helper()
	data, err := toml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok && k != "drivers" {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", m)
	return out
}

// The packaged config.toml sets every key, each to its default but the
// backend, which is Kata's.
func TestPackagedConfigIsTheDefaults(t *testing.T) {
	data, err := os.ReadFile("../packaging/cci-shim/config.toml")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := toml.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	c, _, err := LoadSource("../packaging/cci-shim/config.toml")
	if err != nil {
		t.Fatalf("packaging/cci-shim/config.toml: %v", err)
	}
	if c.Backend.Kind != BackendKata || c.Backend.ConfigPath == "" {
		t.Errorf("packaged backend = %+v, want kata with its config", c.Backend)
	}
	got, want := flatten(t, c), defaults(t)
	got["gpu.drivers"] = map[string]any{}
	// Backend-specific keys: the packaged file is kata's, and the gvisor
	// table, commented in, is only set for that backend.
	for _, k := range []string{"backend.kind", "backend.binary", "backend.config_path", "backend.runc_root"} {
		delete(got, k)
		delete(want, k)
	}
	for k := range want {
		if strings.HasPrefix(k, "backend.gvisor.") {
			delete(got, k)
			delete(want, k)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("packaged config differs from Default():\n got %v\nwant %v", got, want)
	}
	// Every key is written out (a key left out would be a default nobody sees).
	flatRaw := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			flatRaw[prefix+k] = true
		}
	}
	walk("", raw)
	for k := range want {
		if !flatRaw[k] && k != "gpu.drivers" {
			t.Errorf("packaged config does not set %s", k)
		}
	}
}

var (
	readmeRow  = regexp.MustCompile("^\\| ((?:`[^`]+`(?:, )?)+) \\| ([^|]*) \\|")
	backticked = regexp.MustCompile("`([^`]*)`")
)

// The README's configuration table lists every key with the default the
// code has.
func TestReadmeConfigTable(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "## Node configuration")
	if start < 0 {
		t.Fatal("README has no Node configuration section")
	}
	text = text[start:]
	if end := strings.Index(text[3:], "\n## "); end > 0 {
		text = text[:end+3]
	}
	want := defaults(t)
	listed := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		m := readmeRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var keys []string
		for _, k := range backticked.FindAllStringSubmatch(m[1], -1) {
			key := k[1]
			if strings.HasPrefix(key, "gpu.drivers.") || strings.HasPrefix(key, ".") {
				key = "gpu.drivers"
			}
			keys = append(keys, key)
		}
		vals := backticked.FindAllStringSubmatch(m[2], -1)
		for i, key := range keys {
			if _, ok := want[key]; !ok {
				t.Errorf("README lists %s, which the config does not have", key)
				continue
			}
			listed[key] = true
			if len(vals) != len(keys) || strings.Contains(m[2], "<") || key == "backend.binary" || strings.HasPrefix(key, "backend.gvisor.") {
				continue // no literal default, or one that depends on another key (the gvisor table's on backend.kind)
			}
			if got := vals[i][1]; got != toString(want[key]) {
				t.Errorf("README: %s default %q, code %q", key, got, toString(want[key]))
			}
		}
	}
	var missing []string
	for k := range want {
		if !listed[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("README's configuration table lacks %v", missing)
	}
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strings.TrimSpace(strings.ReplaceAll(toml2(v), "\n", ""))
	}
	return toml2(v)
}

func toml2(v any) string {
	data, _ := toml.Marshal(map[string]any{"v": v})
	return strings.TrimSpace(strings.TrimPrefix(string(data), "v = "))
}
