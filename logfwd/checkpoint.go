package logfwd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const checkpointVersion = 1

// checkpoint is the persisted state: per file its identity and the offset
// up to which records have been accepted by the sink, and per positioned
// sink its accepted byte position.
type checkpoint struct {
	Version int              `json:"version"`
	Sinks   map[string]int64 `json:"sinks,omitempty"`
	Files   []cpFile         `json:"files"`
	// Rotations are files truncated (copytruncate) whose copy has not been
	// found yet: a copy found after a restart continues where reading of
	// the original stopped.
	Rotations []cpRotation `json:"rotations,omitempty"`
}

type cpRotation struct {
	Dir   string `json:"dir"`
	FP    uint64 `json:"fp"`
	FPLen int    `json:"fp_len"`
	Off   int64  `json:"off"`
	At    int64  `json:"at"` // Unix nanoseconds
}

type cpFile struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	FP    uint64 `json:"fp"`
	FPLen int    `json:"fp_len"`
	lineState
	Path string `json:"path"`
}

// lineState is where reading stands in a file.
type lineState struct {
	Off     int64 `json:"off"`               // next byte to read: a line start unless Part > 0 or Discard
	Part    int   `json:"part,omitempty"`    // parts already emitted of the current line
	Discard bool  `json:"discard,omitempty"` // dropping the rest of an over-long line
	Long    bool  `json:"long,omitempty"`    // current line already counted as split
}

// loadCheckpoint reads path; a missing file is not an error (ok = false).
func loadCheckpoint(path string) (cp checkpoint, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return checkpoint{Version: checkpointVersion}, false, nil
	}
	if err != nil {
		return cp, false, fmt.Errorf("read checkpoint: %w", err)
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return cp, false, fmt.Errorf("decode checkpoint %s: %w", path, err)
	}
	if cp.Version != checkpointVersion {
		return cp, false, fmt.Errorf("checkpoint %s: version %d, want %d", path, cp.Version, checkpointVersion)
	}
	return cp, true, nil
}

// saveCheckpoint writes path crash-safely: temporary file, fsync, rename,
// and with syncDir fsync of the directory. The directory needs it only when
// path is created: a rename that a power loss undoes leaves the previous
// checkpoint, which is consistent with the sink (Restore cuts the sink back
// to the position that checkpoint recorded and the files are read again
// from its offsets), so later saves spare that fsync.
func saveCheckpoint(path string, cp checkpoint, syncDir bool) error {
	b, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync checkpoint: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename checkpoint: %w", err)
	}
	if !syncDir {
		return nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("sync checkpoint dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync checkpoint dir: %w", err)
	}
	return nil
}
