//go:build !linux

package bench

import (
	"fmt"
	"io"
)

// Main reports that ccibench needs Linux: it drives containerd, runc, loop
// devices and cgroups.
func Main(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "ccibench: Linux only (it drives containerd, runc, loop devices and cgroups)")
	return 1
}
