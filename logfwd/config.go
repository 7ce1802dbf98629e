package logfwd

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// PodIdentity is attached to every record.
type PodIdentity struct {
	Namespace string
	Name      string
	UID       string
}

// FileSinkConfig configures the local JSON-lines sink (the default
// destination). One collector owns one sink file, Dir/Name.
type FileSinkConfig struct {
	// Dir is the node's sink directory (logs.file_dir): trusted, created
	// by the operator or the shim, never tenant-writable.
	Dir string `json:",omitempty"`
	// Name is the sink file inside Dir, one path component; for a pod it is
	// SinkFileName(containerd namespace, sandbox id), never a tenant name.
	// It is opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) and
	// O_NOFOLLOW beneath Dir; a symlink, a non-regular file or a file with
	// other hard links is refused.
	Name string `json:",omitempty"`
	// Path is Dir and Name in one string (Dir = its directory, Name = its
	// last element), opened the same way.
	//
	// Deprecated: set Dir and Name.
	Path string `json:",omitempty"`
}

// dirName returns the sink's directory and file name, checking that the
// name is one path component.
func (f FileSinkConfig) dirName() (dir, name string, err error) {
	dir, name = f.Dir, f.Name
	if dir == "" && name == "" && f.Path != "" {
		dir, name = filepath.Split(f.Path)
	} else if f.Path != "" {
		return "", "", fmt.Errorf("file sink: set Dir and Name or Path (deprecated), not both")
	}
	switch {
	case dir == "" || !filepath.IsAbs(dir):
		return "", "", fmt.Errorf("file sink dir %q: an absolute host directory is required", dir)
	case name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255:
		return "", "", fmt.Errorf("file sink name %q: one file name (no '/', NUL, '.' or '..', at most 255 bytes) is required", name)
	}
	return filepath.Clean(dir), name, nil
}

// ForwardConfig configures the Fluent Forward sink.
type ForwardConfig struct {
	// Address is "tcp://host:port" or "unix:///path/to.sock".
	Address string
	// Tag is the default tag for records whose policy names none.
	Tag string
	// RequireAck sends the chunk option and waits for the ack; without it
	// delivery is at-most-once over a connection that breaks.
	RequireAck bool
	// DialTimeout, AckTimeout bound one attempt (default 5s, 30s).
	DialTimeout time.Duration
	AckTimeout  time.Duration
	// MinBackoff, MaxBackoff bound the reconnect delay (default 100ms, 10s).
	MinBackoff time.Duration
	MaxBackoff time.Duration
}

// Config configures one pod's collector.
type Config struct {
	// Root is the host directory holding the pod's log volume; watch
	// directories live at HostDir(Root, container, dir). Root itself is
	// trusted (created by the shim); everything below it is tenant-owned.
	Root    string
	Watches []Watch
	Pod     PodIdentity

	FileSink *FileSinkConfig // destination "file"
	Forward  *ForwardConfig  // destination "forward"

	// CheckpointPath is the offsets file (written by write, fsync, rename).
	CheckpointPath string

	// PollInterval is the discovery safety net (R16); default 5s.
	PollInterval time.Duration
	// DisableInotify turns off fsnotify (poll only; for benchmarks).
	DisableInotify bool
	// LongLines is the default for watches that name none; default split.
	LongLines LongLineMode
	// MaxLineBytes is the line limit (R19); default DefaultMaxLineBytes.
	MaxLineBytes int
	// FlushTimeout is how long a last line without newline waits before it
	// is forwarded as a partial record; default 5s.
	FlushTimeout time.Duration
	// ReleaseAfter is how long a deleted or renamed-away file must stay
	// quiet at its end before its descriptor is closed; default 2s.
	ReleaseAfter time.Duration
	// CopyWait is how long a new file whose first bytes equal those of a
	// live file waits for that file's truncation (copytruncate) before it
	// is read from its start as an independent file; default 10s.
	CopyWait time.Duration
	// MaxFiles bounds the files followed at once (one descriptor each);
	// extra files are skipped (counted, reason "limit") until slots free.
	// Default 1024.
	MaxFiles int
	// MaxBatchBytes bounds one delivery (and so memory while the sink is
	// down); default 1 MiB.
	MaxBatchBytes int

	// Observer, when set, is called with every batch as soon as its sink
	// accepted it (written and synced, or acknowledged), on the
	// collector's goroutine: it must return quickly and must not modify
	// recs. For measurements (write->sink latency, MeasureLatency); with
	// it the file sink gets Records instead of lines encoded as read (a
	// little more CPU per line). Not persisted.
	Observer func(dest string, recs []Record) `json:"-"`

	// noOpenat2 forces the O_NOFOLLOW walking fallback (tests).
	noOpenat2 bool
}

func (c *Config) setDefaults() {
	if c.PollInterval <= 0 {
		c.PollInterval = 5 * time.Second
	}
	if c.LongLines == "" {
		c.LongLines = LongLinesSplit
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	if c.FlushTimeout <= 0 {
		c.FlushTimeout = 5 * time.Second
	}
	if c.ReleaseAfter <= 0 {
		c.ReleaseAfter = 2 * time.Second
	}
	if c.CopyWait <= 0 {
		c.CopyWait = 10 * time.Second
	}
	if c.MaxFiles <= 0 {
		c.MaxFiles = 1024
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if f := c.Forward; f != nil {
		if f.DialTimeout <= 0 {
			f.DialTimeout = 5 * time.Second
		}
		if f.AckTimeout <= 0 {
			f.AckTimeout = 30 * time.Second
		}
		if f.MinBackoff <= 0 {
			f.MinBackoff = 100 * time.Millisecond
		}
		if f.MaxBackoff <= 0 {
			f.MaxBackoff = 10 * time.Second
		}
		if f.Tag == "" {
			f.Tag = "cci.logs"
		}
	}
}

func (c *Config) validate() error {
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return fmt.Errorf("root %q: an absolute host directory is required", c.Root)
	}
	if c.CheckpointPath == "" {
		return errors.New("checkpoint path is required")
	}
	if c.FileSink == nil && c.Forward == nil {
		return errors.New("no sink configured: set FileSink or Forward")
	}
	if c.FileSink != nil {
		if _, _, err := c.FileSink.dirName(); err != nil {
			return err
		}
	}
	for i, w := range c.Watches {
		if err := c.checkWatch(w); err != nil {
			return fmt.Errorf("watch[%d]: %w", i, err)
		}
	}
	return nil
}

func (c *Config) checkWatch(w Watch) error {
	p := Policy{Container: w.Container, Paths: []string{w.Dir + "/" + w.Pattern},
		Destination: w.Destination, Tag: w.Tag, LongLines: w.LongLines}
	if w.Dir == "/" {
		p.Paths[0] = "/" + w.Pattern
	}
	if err := p.Validate(); err != nil {
		return err
	}
	switch dest(w) {
	case DestinationFile:
		if c.FileSink == nil {
			return fmt.Errorf("destination %q: no file sink configured on this node", DestinationFile)
		}
	case DestinationForward:
		if c.Forward == nil {
			return fmt.Errorf("destination %q: no forward endpoint configured on this node", DestinationForward)
		}
	}
	return nil
}

func dest(w Watch) string {
	if w.Destination == "" {
		return DestinationFile
	}
	return w.Destination
}
