//go:build !linux

package sandbox

import (
	"fmt"

	"github.com/containerd/errdefs"
)

func hostFS(path string) (int64, bool, error) {
	return 0, false, fmt.Errorf("statfs %s: %w", path, errdefs.ErrNotImplemented)
}
