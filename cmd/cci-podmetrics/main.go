// Command cci-podmetrics is the in-sandbox half of a pod's metrics endpoint
// (SPEC R27) where the sandbox owns the pod's network interface (gVisor,
// Kata): the shim bind-mounts it read-only into the pod's sandbox container
// and starts it there; it listens on the metrics port and relays each request
// to the shim over stdin/stdout (see podmetrics/relay). Stdout is the
// protocol: it prints nothing else there.
package main

//
// Its memory is the pod's, in every pod of such a backend: it imports
// neither flag nor fmt (their reflection tables double its resident size).
//
// Usage: cci-podmetrics -port N
import (
	"errors"
	"io"
	"os"
	"strconv"

	"github.com/cci-shim/cci-shim/podmetrics/relay"
)

func main() {
	port := 19100
	if len(os.Args) == 3 && os.Args[1] == "-port" {
		p, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fail("bad port " + strconv.Quote(os.Args[2]))
		}
		port = p
	} else if len(os.Args) != 1 {
		fail("usage: cci-podmetrics [-port N]")
	}
	fd, err := relay.Listen(port)
	if err != nil {
		fail(err.Error())
	}
	if err := relay.Serve(fd, os.Stdin, os.Stdout); err != nil && !errors.Is(err, io.EOF) {
		fail(err.Error())
	}
}

func fail(msg string) {
	os.Stderr.WriteString("cci-podmetrics: " + msg + "\n")
	os.Exit(1)
}
