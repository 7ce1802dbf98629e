package shim

import (
	"fmt"
	"os"
)

// On-disk state of a pod, under <state_dir>/<namespace>/<pod id>/:
//
//	resources.json    the owner's journal of the pod's host resources
//	resources.lock    serialises the processes that change it
//	backend/          the backend shim's working dir (config.json, log FIFO)
//	bundles/<id>/     the backend's bundle for each container
//	io/<id>/          our stdio FIFOs
//	logs.json         the log collector's config; logs.checkpoint its offsets
//	stats.json        the pod's stats for the node agent
//	pod-state.json    the pod's policy state (sandbox.PodState)
//
// It lets the delete subcommand release everything after this shim died.

// Annotation CRI puts on every container of a pod; containers carrying it
// join the sandbox's shim (R1).
const annotationSandboxID = "io.kubernetes.cri.sandbox-id"

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// podID returns the pod a container belongs to: its CRI sandbox, else
// itself. The caller validates it before it becomes part of a path.
func podID(annotations map[string]string, id string) string {
	if sb := annotations[annotationSandboxID]; sb != "" {
		return sb
	}
	return id
}
