package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/cci-shim/cci-shim/internal/lazyre"
)

// DefaultPath is where the node configuration lives on a production host.
const DefaultPath = "/etc/cci-shim/config.toml"

// EnvPath names an environment variable that overrides DefaultPath. containerd
// passes its environment to shims, so setting it on the containerd service
// selects another file for every shim.
const EnvPath = "CCI_SHIM_CONFIG"

// backendKinds lists the backend.kind values, for errors.
var backendKinds = []string{BackendKata, BackendGVisor, BackendRunc}

// Source says which file a configuration comes from and why that one.
type Source struct {
	Path string `json:"path"`
	// From is how Path was chosen: "explicit" (a --config flag or the
	// runtime option ConfigPath), "$CCI_SHIM_CONFIG" or "default".
	From string `json:"from"`
}

// Resolve returns the configuration file to read: explicit if not empty,
// else $CCI_SHIM_CONFIG, else DefaultPath.
func Resolve(explicit string) Source {
	if explicit != "" {
		return Source{Path: explicit, From: "explicit"}
	}
	if p := os.Getenv(EnvPath); p != "" {
		return Source{Path: p, From: "$" + EnvPath}
	}
	return Source{Path: DefaultPath, From: "default"}
}

// Load reads the configuration at Resolve(explicit), fills defaults and
// validates it.
func Load(explicit string) (Config, error) {
	c, _, err := LoadSource(explicit)
	return c, err
}

// LoadSource is Load that also says which file it read.
//
// The file is required, wherever it is: a node without one runs nothing
// rather than a backend nobody chose (R2), and the file must set
// backend.kind. Errors name the file, and for bad TOML the line, column and
// key.
func LoadSource(explicit string) (Config, Source, error) {
	src := Resolve(explicit)
	data, err := os.ReadFile(src.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Config{}, src, fmt.Errorf("node config %s (%s): %w; every node needs one: install packaging/cci-shim/config.toml there, "+
			"or name another file (cci-agent --config, $%s in containerd's environment, or the runtime option ConfigPath)",
			src.Path, src.describe(), err, EnvPath)
	case err != nil:
		return Config{}, src, fmt.Errorf("node config %s: %w", src.Path, err)
	}
	cfg := Default()
	cfg.Backend.Kind = ""
	if err := decode(data, &cfg); err != nil {
		return Config{}, src, fmt.Errorf("node config %s%w", src.Path, err)
	}
	if cfg.Backend.Kind == "" {
		return Config{}, src, fmt.Errorf("node config %s: backend.kind is not set: the sandbox every pod runs in is the operator's choice "+
			"(allowed values: %s; kata is production, gvisor a user-space kernel per pod, runc shares the host kernel)", src.Path, quoteList(backendKinds))
	}
	if err := cfg.finish(); err != nil {
		return Config{}, src, fmt.Errorf("node config %s: %w", src.Path, err)
	}
	return cfg, src, nil
}

func (s Source) describe() string {
	switch s.From {
	case "explicit":
		return "named explicitly"
	case "default":
		return "the default path; $" + EnvPath + " is not set"
	}
	return "from " + s.From
}

// Parse decodes TOML over cfg (which carries the defaults), rejecting unknown
// keys so that a typo does not silently keep a default, and validates the
// result. Errors start with ":line:column: key:" for bad TOML.
func Parse(data []byte, cfg *Config) error {
	if err := decode(data, cfg); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), ":"))
	}
	return cfg.finish()
}

// decode decodes TOML strictly. Its errors start with ":line:column: key:"
// so that the caller can put the file name in front.
func decode(data []byte, cfg *Config) error {
	dec := toml.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	err := dec.Decode(cfg)
	if err == nil {
		return nil
	}
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) {
		var errs []string
		for _, e := range sm.Errors {
			row, col := e.Position()
			errs = append(errs, fmt.Sprintf("%d:%d: unknown setting %s", row, col, keyName(e.Key())))
		}
		return errors.New(":" + strings.Join(errs, "; ") + " (a typo would otherwise silently keep a default)")
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if m := typeMismatch.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("a TOML %s where %s is expected", m[1], goTypeName(m[2]))
		}
		if k := keyName(de.Key()); k != "" {
			return fmt.Errorf(":%d:%d: %s: %s", row, col, k, msg)
		}
		return fmt.Errorf(":%d:%d: %s", row, col, msg)
	}
	return fmt.Errorf(": %w", err)
}

var typeMismatch = lazyre.New(`^cannot decode TOML (\w+) into struct field \S+ of type (\S+)$`)

// goTypeName says what a Go field type expects, in TOML's words.
func goTypeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case t == "bool":
		return "a boolean (true or false)"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "map["), strings.Contains(t, "."):
		return "a table"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	}
	return "a " + t
}

func keyName(k toml.Key) string { return strings.Join(k, ".") }

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
