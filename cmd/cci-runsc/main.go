// Command cci-runsc is the OCI runtime binary the cci shim's gvisor backend
// hands containerd's runc shim: runsc with the node's flags, plus what the
// runc shim needs of a runtime that runsc does differently for a container
// added to a running sandbox. The adapter (sandbox/backend) writes a script
// that runs it as
//
//	cci-runsc RUNSC NODE-FLAGS... -- RUNC-SHIM-ARGS...
package main

import (
	"os"

	"github.com/cci-shim/cci-shim/cmd/cci-runsc/internal/runscwrap"
)

func main() {
	os.Exit(runscwrap.Main(os.Args[1:]))
}
