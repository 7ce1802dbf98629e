package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// On-disk state of a pod, under <state_dir>/<namespace>/<pod id>/:
//
//	shim.pid          this shim's pid
//	shim.address      this shim's socket
//	backend.json      the backend shim's pid and address
//	bundles/<id>/     the backend's bundle for each container
//	io/<id>/          our stdio FIFOs
//
// It lets the delete subcommand clean up after this shim died.
const (
	shimPidFile       = "shim.pid"
	shimAddressFile   = "shim.address"
	backendRecordFile = "backend.json"
)

// Annotation CRI puts on every container of a pod; containers carrying it
// join the sandbox's shim (R1).
const annotationSandboxID = "io.kubernetes.cri.sandbox-id"

type backendRecord struct {
	Pid     int    `json:"pid"`
	Address string `json:"address"`
}

func writeBackendRecord(podDir string, r backendRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(podDir, backendRecordFile), data)
}

func readBackendRecord(podDir string) (backendRecord, error) {
	var r backendRecord
	data, err := os.ReadFile(filepath.Join(podDir, backendRecordFile))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(data, &r)
}

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

func readPid(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

// podID returns the pod a container belongs to: its CRI sandbox, else itself.
func podID(spec *specs.Spec, id string) string {
	if spec != nil {
		if sb := spec.Annotations[annotationSandboxID]; sb != "" {
			return sb
		}
	}
	return id
}
