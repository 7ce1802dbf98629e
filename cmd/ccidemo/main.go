// Command ccidemo is the main job of `make run`: a demo pod through a local
// containerd with the cci runtime, showing each platform rule applied.
package main

import (
	"os"

	"github.com/cci-shim/cci-shim/internal/demo"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

func main() {
	p := e2eenv.NewProgram(os.Stdout)
	if err := p.Run(func() { demo.Run(p) }); err != nil {
		os.Exit(1)
	}
}
