package tests

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/internal/forwardtest"
	"github.com/cci-shim/cci-shim/logfwd"
)

// TestForwardDestinationDownAtPodRemoval (issues 10 and 9): a pod's log
// destination is down (or hangs) when the pod is removed. Removal does not
// hang: the collector's drain is bounded, what it could not deliver is
// spooled with its checkpoint, nothing of the pod is left, and once the
// destination is back the spool delivers the rest: every line exactly once.
func TestForwardDestinationDownAtPodRemoval(t *testing.T) {
	for _, mode := range []string{"down", "hanging"} {
		t.Run(mode, func(t *testing.T) {
			r := forwardtest.New(t)
			env := startEnv(t, true, fmt.Sprintf("logs.forward_address = %q\n", "tcp://"+r.Addr))
			ctx := env.Context()
			pod := mustRunPod(ctx, t, env, podConfig(env, "fwd", map[string]string{
				"logs.cci.io/policies": `[{"container":"app","paths":["/var/log/app/*.log"],"destination":"forward","tag":"app"}]`,
			}))
			id := pod.mustStart(ctx, t, sleeper(env, "app"))
			write := func(prefix string, n int) {
				pod.exec(ctx, t, id, fmt.Sprintf(`mkdir -p /var/log/app; i=1; while [ $i -le %d ]; do echo "%s $i" >> /var/log/app/a.log; i=$((i+1)); done`, n, prefix))
			}
			write("before", 300)
			if !waitFor(15*time.Second, func() bool { return len(r.Lines()) >= 300 }) {
				t.Fatalf("only %d of 300 lines delivered while the destination was up", len(r.Lines()))
			}
			switch mode {
			case "down":
				r.Down()
			case "hanging":
				r.Hang()
			}
			write("after", 300)
			began := time.Now()
			pod.remove(ctx, t)
			took := time.Since(began)
			t.Logf("pod removal with the destination %s took %v", mode, took.Round(time.Millisecond))
			if took > 40*time.Second {
				t.Errorf("pod removal took %v: the drain is not bounded", took)
			}
			assertClean(t, env)

			// The destination comes back; cci-agent's spool pass delivers.
			if mode == "down" {
				r.Up()
			} else {
				r.StallAfter(0)
			}
			cfg := config.Default()
			cfg.Policy.VolumeDir = env.Dir + "/volumes"
			res, err := logfwd.DrainSpool(context.Background(), cfg.LogSpoolDir(), 20*time.Second, slog.Default())
			if err != nil || res.Drained != 1 {
				t.Fatalf("spool pass: %+v, %v; want the pod's volume delivered", res, err)
			}
			counts := map[string]int{}
			for _, l := range r.Lines() {
				counts[l]++
			}
			lost, repeated := 0, 0
			for _, p := range []string{"before", "after"} {
				for i := 1; i <= 300; i++ {
					switch c := counts[fmt.Sprintf("%s %d", p, i)]; {
					case c == 0:
						lost++
					case c > 1:
						repeated++
					}
				}
			}
			t.Logf("600 lines: %d lost, %d repeated (Forward is at-least-once per unacknowledged chunk)", lost, repeated)
			if lost > 0 {
				t.Errorf("%d lines lost", lost)
			}
			if mode == "down" && repeated > 0 {
				t.Errorf("%d lines repeated", repeated)
			}
			if left := strings.TrimSpace(readFile(cfg.LogSpoolDir())); left != "" {
				t.Errorf("spool not emptied")
			}
		})
	}
}
