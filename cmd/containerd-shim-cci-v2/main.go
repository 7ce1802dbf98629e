// Command containerd-shim-cci-v2 is the cci runtime (io.containerd.cci.v2):
// a containerd shim that runs each pod through a backend shim (Kata in
// production, gVisor or runc in development) and applies the platform's
// rules to it.
package main

import (
	"context"
	"os"

	"github.com/containerd/containerd/v2/pkg/shim"

	ccishim "github.com/cci-shim/cci-shim/shim"
)

func main() {
	// -v and --help are cci-shim's; containerd's harness handles the rest.
	if code, done := intercept(os.Args, os.Stdout); done {
		os.Exit(code)
	}
	shim.RunShim(context.Background(), ccishim.NewManager("io.containerd.cci.v2"))
}
