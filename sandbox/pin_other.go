//go:build !linux

package sandbox

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// PinSources needs Linux.
func PinSources(pins []Pin) ([]string, error) {
	if len(pins) == 0 {
		return nil, nil
	}
	return nil, fmt.Errorf("pinning bind sources: %w", errdefs.ErrNotImplemented)
}

// UnpinSources needs Linux.
func UnpinSources(targets []string) error {
	if len(targets) == 0 {
		return nil
	}
	return fmt.Errorf("unpinning bind sources: %w", errdefs.ErrNotImplemented)
}

// CheckRoots needs Linux.
func CheckRoots(kubeletRoot, containerdRoot, containerdState string) []string {
	return []string{"checking roots: not implemented on this platform"}
}

func hostFS(p Pin) (int64, bool, error) {
	return 0, false, fmt.Errorf("statfs %s: %w", p.Rel, errdefs.ErrNotImplemented)
}
