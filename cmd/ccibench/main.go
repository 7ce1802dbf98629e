// Command ccibench is cci-shim's bench harness; see `ccibench --help` and
// package bench.
package main

import (
	"os"

	"github.com/cci-shim/cci-shim/bench"
)

func main() {
	os.Exit(bench.Main(os.Args[1:], os.Stdout, os.Stderr))
}
