package checks

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Host is the hardware and the programs the checks ask: KVM, devices,
// device-mapper and binaries in PATH. RealHost asks this machine; tests use
// a fake.
type Host interface {
	// KVM opens the KVM device at path, asks its API version and creates
	// (and closes) a VM, as a hypervisor would.
	KVM(path string) (apiVersion int, err error)
	// OpenDevice opens a character device read-write and closes it.
	OpenDevice(path string) error
	// ThinPoolStatus returns `dmsetup status NAME` for a device-mapper
	// device; it fails when device-mapper or the device is missing.
	ThinPoolStatus(name string) (string, error)
	// LookPath finds a program as exec.LookPath does.
	LookPath(file string) (string, error)
	// Output runs a program briefly and returns its standard output; a
	// failure's error carries the end of its standard error.
	Output(name string, args ...string) (string, error)
}

// RealHost is this machine.
type RealHost struct{}

var _ Host = RealHost{}

// LookPath is exec.LookPath.
func (RealHost) LookPath(file string) (string, error) { return exec.LookPath(file) }

// Output runs name with a 5 s limit.
func (RealHost) Output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, lastLine(stderr.String()))
	}
	return strings.TrimSpace(string(out)), err
}

// ThinPoolStatus runs dmsetup status.
func (h RealHost) ThinPoolStatus(name string) (string, error) {
	return h.Output("dmsetup", "status", name)
}
