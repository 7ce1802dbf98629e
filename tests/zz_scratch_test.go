package tests

import (
	"os"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// Scratch env for manual experiments (not committed).
func TestZZScratchEnv(t *testing.T) {
	if os.Getenv("SCRATCH") == "" {
		t.Skip("SCRATCH unset (CI never)")
	}
	env := e2eenv.Start(t, e2eenv.Options{CRI: true, NodeConfig: os.Getenv("SCRATCH_NODECFG")})
	info := "DIR=" + env.Dir + "\nADDR=" + env.Address + "\nNS=" + env.Namespace + "\nIMG=" + env.Image + "\nBRIDGE=" + env.BridgeName + "\nSUBNET=" + env.PodSubnet + "\nNODECFG=" + env.NodeConfigPath + "\nSTATE=" + env.StateDir + "\n"
	os.WriteFile("/tmp/dexp/env", []byte(info), 0o644)
	for {
		if _, err := os.Stat("/tmp/dexp/stop"); err == nil {
			os.Remove("/tmp/dexp/stop")
			return
		}
		time.Sleep(time.Second)
	}
}
