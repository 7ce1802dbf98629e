// Command cci-webhook is the cci platform's admission webhook for pods
// (R26 image replacement, the annotations the shim needs under kubelet, and
// refusals of bad *.cci.io/* annotations). Run `cci-webhook --help`.
package main

import (
	"os"

	"github.com/cci-shim/cci-shim/cmd/cci-webhook/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
