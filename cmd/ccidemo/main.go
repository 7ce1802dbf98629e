// Command ccidemo is the main job of `make run`: a demo pod through a local
// containerd with the cci runtime, showing each platform rule applied.
package main

import (
	"fmt"
	"os"

	"github.com/cci-shim/cci-shim/internal/demo"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

func main() {
	p := e2eenv.NewProgram(os.Stdout)
	if err := p.Run(func() error { demo.Run(p); return nil }); err != nil {
		fmt.Fprintln(os.Stderr, "ccidemo:", err)
		os.Exit(1)
	}
}
