// Package podstats is the stats file each pod's shim writes to its state dir
// every second, and its reader: the throttle and log-collection figures the
// node agent exports and the bench harness reads. It holds no logic.
package podstats

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
)

// File is the stats file's name in <state_dir>/<namespace>/<pod>/.
const File = "stats.json"

// Pod is the stats file of a pod.
type Pod struct {
	Time       time.Time            `json:"time"`
	Containers map[string]Container `json:"containers"`
	Logs       *logfwd.Stats        `json:"logs,omitempty"`
}

// Container is one container's entry.
type Container struct {
	Stdio  iothrottle.Stats `json:"stdio"`
	Rootfs *Rootfs          `json:"rootfs,omitempty"`
}

// Rootfs is a container's throttled rootfs device and its I/O.
type Rootfs struct {
	Device string                    `json:"device"`
	Limits iothrottle.DeviceLimits   `json:"limits"`
	IO     *iothrottle.DeviceIOStats `json:"io,omitempty"`
}

// ReadAll reads the stats file of every pod under stateDir, keyed by
// "namespace/pod".
func ReadAll(stateDir string) (map[string]Pod, error) {
	paths, err := filepath.Glob(filepath.Join(stateDir, "*", "*", File))
	if err != nil {
		return nil, err
	}
	out := make(map[string]Pod, len(paths))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue // the pod went away
		}
		var ps Pod
		if err := json.Unmarshal(data, &ps); err != nil {
			return nil, fmt.Errorf("stats file %s: %w", p, err)
		}
		dir := filepath.Dir(p)
		out[filepath.Base(filepath.Dir(dir))+"/"+filepath.Base(dir)] = ps
	}
	return out, nil
}
