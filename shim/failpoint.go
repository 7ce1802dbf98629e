package shim

import (
	"os"
	"strings"
	"syscall"
)

// envFailpoint names steps at which the shim kills itself with SIGKILL, for
// the fault-injection tests (tests/failure_test.go): a comma-separated list
// of step names such as "create:backend", each optionally for one container
// only ("create:backend@ctr-7"). Read once at start; unset, a
// failpoint costs a map lookup. It is in containerd's environment, which only
// the node's operator controls, never in anything a pod can set.
const envFailpoint = "CCI_SHIM_TEST_FAILPOINTS"

type failpoints map[string]bool

func loadFailpoints() failpoints {
	v := os.Getenv(envFailpoint)
	if v == "" {
		return nil
	}
	fp := failpoints{}
	for _, name := range strings.Split(v, ",") {
		fp[strings.TrimSpace(name)] = true
	}
	return fp
}

// failpoint dies at the named step of container id if the test asked for it.
func (s *service) failpoint(name, id string) {
	if s.failpoints[name] || s.failpoints[name+"@"+id] {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
