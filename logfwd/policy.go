package logfwd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/cci-shim/cci-shim/internal/lazyre"
)

// AnnotationPolicies is the pod annotation that declares the log files to
// collect. Its value is a JSON list of Policy objects, for example:
//
//	[{"container": "app",
//	  "paths": ["/var/log/app/*.log"],
//	  "destination": "forward",
//	  "tag": "app.access",
//	  "long_lines": "drop"}]
//
// Unknown fields are refused so that typos surface at pod creation.
const AnnotationPolicies = "logs.cci.io/policies"

// Limits on tenant input (R19 and sanity bounds on the annotation).
const (
	// MaxFileNameLen is the longest file name (bytes) that is collected;
	// longer names are skipped and counted (R19).
	MaxFileNameLen = 190
	// DefaultMaxLineBytes is the longest line forwarded whole (250 KiB of
	// content, the newline not counted); longer lines are split or dropped.
	DefaultMaxLineBytes = 250 * 1024

	maxAnnotationLen = 64 << 10
	maxPolicies      = 32
	maxPathsPerPol   = 16
	maxPathLen       = 1024
	maxTagLen        = 128
)

// Destinations a policy may name. The endpoints themselves are node
// configuration (Config.FileSink, Config.Forward): a tenant chooses where its
// logs go, never which host address the node connects to.
const (
	DestinationFile    = "file"
	DestinationForward = "forward"
)

// LongLineMode says what happens to a line longer than the line limit.
type LongLineMode string

const (
	// LongLinesSplit forwards the line in parts of at most the limit, each
	// flagged partial (default, beyond the service's behaviour).
	LongLinesSplit LongLineMode = "split"
	// LongLinesDrop drops the whole line (the service's behaviour).
	LongLinesDrop LongLineMode = "drop"
)

// Policy is one entry of the AnnotationPolicies list.
type Policy struct {
	// Container is the container name whose files are collected.
	Container string `json:"container"`
	// Paths are absolute container paths; wildcards (* ? [..]) are allowed
	// in the last component only.
	Paths []string `json:"paths"`
	// Destination is "file" (default) or "forward".
	Destination string `json:"destination,omitempty"`
	// Tag is the Fluent Forward tag; empty means the node default.
	Tag string `json:"tag,omitempty"`
	// LongLines is "split" (default) or "drop".
	LongLines LongLineMode `json:"long_lines,omitempty"`
}

// Watch is one directory + pattern the collector follows, derived from a
// Policy path. Its host directory is HostDir(Config.Root, Container, Dir).
type Watch struct {
	Container   string
	Dir         string // container directory, absolute, clean
	Pattern     string // glob on the file name (path.Match syntax)
	Destination string
	Tag         string
	LongLines   LongLineMode
}

var (
	containerNameRE = lazyre.New(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	tagRE           = lazyre.New(`^[A-Za-z0-9_.-]+$`)
)

// forbiddenTrees are locations that are system, device, cgroup or tmpfs
// mounts in a Linux container: /proc and /sys (incl. /sys/fs/cgroup), /dev
// (incl. /dev/shm, /dev/mqueue) and /run (tmpfs on every systemd and most
// container setups; /var/run and /var/lock link into it).
var forbiddenTrees = []string{"/proc", "/sys", "/dev", "/run", "/var/run", "/var/lock"}

// forbiddenDirs may not be a log directory themselves: the log volume is
// mounted over the directory, which would hide the image's files there.
var forbiddenDirs = map[string]bool{
	"/": true, "/bin": true, "/sbin": true, "/boot": true, "/etc": true,
	"/lib": true, "/lib32": true, "/lib64": true, "/libx32": true,
	"/usr": true, "/usr/bin": true, "/usr/sbin": true, "/usr/lib": true,
	"/var": true, "/root": true,
}

// ParsePolicies parses the value of the AnnotationPolicies annotation and
// validates every policy. An empty value means no policies.
func ParsePolicies(value string) ([]Policy, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	if len(value) > maxAnnotationLen {
		return nil, fmt.Errorf("annotation %s: value is %d bytes; at most %d allowed",
			AnnotationPolicies, len(value), maxAnnotationLen)
	}
	dec := json.NewDecoder(strings.NewReader(value))
	dec.DisallowUnknownFields()
	var ps []Policy
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("annotation %s: want a JSON list of {container, paths, destination, tag, long_lines}: %w",
			AnnotationPolicies, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("annotation %s: trailing data after the JSON list", AnnotationPolicies)
	}
	if len(ps) > maxPolicies {
		return nil, fmt.Errorf("annotation %s: %d policies; at most %d allowed", AnnotationPolicies, len(ps), maxPolicies)
	}
	seen := map[string]int{}
	for i := range ps {
		if err := ps[i].Validate(); err != nil {
			return nil, fmt.Errorf("annotation %s: policy[%d]: %w", AnnotationPolicies, i, err)
		}
		for _, p := range ps[i].Paths {
			k := ps[i].Container + "\x00" + p
			if j, dup := seen[k]; dup {
				return nil, fmt.Errorf("annotation %s: policy[%d]: path %q of container %q is already declared by policy[%d]",
					AnnotationPolicies, i, p, ps[i].Container, j)
			}
			seen[k] = i
		}
	}
	return ps, nil
}

// Validate checks one policy; errors name the field, the value and what is
// allowed.
func (p Policy) Validate() error {
	if !containerNameRE.MatchString(p.Container) {
		return fmt.Errorf("container %q: must be a DNS-1123 label (lowercase letters, digits, '-', at most 63)", p.Container)
	}
	if len(p.Paths) == 0 || len(p.Paths) > maxPathsPerPol {
		return fmt.Errorf("paths: %d given; between 1 and %d allowed", len(p.Paths), maxPathsPerPol)
	}
	for i, pth := range p.Paths {
		if err := validatePath(pth); err != nil {
			return fmt.Errorf("paths[%d]: %w", i, err)
		}
	}
	switch p.Destination {
	case "", DestinationFile, DestinationForward:
	default:
		return fmt.Errorf("destination %q: allowed are %q and %q", p.Destination, DestinationFile, DestinationForward)
	}
	if p.Tag != "" && (len(p.Tag) > maxTagLen || !tagRE.MatchString(p.Tag)) {
		return fmt.Errorf("tag %q: allowed are 1-%d of A-Z a-z 0-9 _ . -", p.Tag, maxTagLen)
	}
	switch p.LongLines {
	case "", LongLinesSplit, LongLinesDrop:
	default:
		return fmt.Errorf("long_lines %q: allowed are %q and %q", p.LongLines, LongLinesSplit, LongLinesDrop)
	}
	return nil
}

func validatePath(p string) error {
	switch {
	case p == "":
		return errors.New("path is empty; an absolute container path such as /var/log/app/*.log is required")
	case len(p) > maxPathLen:
		return fmt.Errorf("path %.40q...: %d bytes; at most %d allowed", p, len(p), maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q: NUL bytes are not allowed", p)
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q: must be absolute", p)
	case strings.HasSuffix(p, "/"):
		return fmt.Errorf("path %q: must name files (e.g. %s*.log), not a directory", p, p)
	}
	for _, c := range strings.Split(p[1:], "/") {
		if c == ".." || c == "." || c == "" {
			return fmt.Errorf("path %q: empty, '.' and '..' components are not allowed", p)
		}
	}
	dir, file := path.Split(p)
	dir = path.Clean(dir)
	if strings.ContainsAny(dir, `*?[\`) {
		return fmt.Errorf("path %q: wildcards are allowed in the last component only", p)
	}
	if _, err := path.Match(file, ""); err != nil {
		return fmt.Errorf("path %q: bad pattern %q: %w", p, file, err)
	}
	if !strings.ContainsAny(file, `*?[`) && len(file) > MaxFileNameLen {
		return fmt.Errorf("path %q: file name is %d bytes; names over %d are not collected", p, len(file), MaxFileNameLen)
	}
	for _, t := range forbiddenTrees {
		if dir == t || strings.HasPrefix(dir, t+"/") {
			return fmt.Errorf("path %q: %s is a system, device, cgroup or tmpfs location; log paths may not be under %s",
				p, t, strings.Join(forbiddenTrees, ", "))
		}
	}
	if forbiddenDirs[dir] {
		return fmt.Errorf("path %q: directory %s would be hidden by the log volume; use a dedicated directory such as /var/log/<app>", p, dir)
	}
	return nil
}

// Watches expands policies into one Watch per path.
func Watches(ps []Policy) []Watch {
	var ws []Watch
	for _, p := range ps {
		for _, pth := range p.Paths {
			dir, file := path.Split(pth)
			ws = append(ws, Watch{
				Container: p.Container, Dir: path.Clean(dir), Pattern: file,
				Destination: p.Destination, Tag: p.Tag, LongLines: p.LongLines,
			})
		}
	}
	return ws
}

// HostDir returns the host directory that backs containerDir of container
// under root: root/<escaped container>/<escaped containerDir>. Each part is
// escaped into one path component (injective, never "." or "..", never
// containing '/'), so odd names cannot escape root or collide.
func HostDir(root, container, containerDir string) string {
	return filepath.Join(root, escapeComponent(container), escapeComponent(path.Clean("/"+containerDir)))
}

// relHostDir is HostDir relative to root.
func relHostDir(container, containerDir string) string {
	return escapeComponent(container) + "/" + escapeComponent(path.Clean("/"+containerDir))
}

// escapeComponent percent-encodes every byte outside [A-Za-z0-9_-] (and a
// '.' anywhere), and shortens results over 200 bytes with a hash suffix.
func escapeComponent(s string) string {
	var b bytes.Buffer
	if s == "" {
		b.WriteString("%")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	out := b.String()
	if len(out) > 200 {
		sum := sha256.Sum256([]byte(s))
		out = out[:160] + "~" + hex.EncodeToString(sum[:16])
	}
	return out
}
