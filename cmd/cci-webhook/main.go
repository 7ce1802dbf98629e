// Command cci-webhook is the cci platform's admission webhook for pods
// (R26 image replacement, the annotations the shim needs under kubelet, and
// refusals of bad *.cci.io/* annotations). Run `cci-webhook --help`.
package main

import (
	"os"

	"github.com/cci-shim/cci-shim/cmd/cci-webhook/internal/cli"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(cli.Run(os.Args[1:], version, os.Stdout, os.Stderr))
}
