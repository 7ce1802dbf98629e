package logfwd

import (
	"github.com/cci-shim/cci-shim/internal/forwardtest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func forwardEnv(t *testing.T, r *forwardtest.Receiver, mod func(*Config)) *env {
	e := newEnv(t, "*.log", func(c *Config) {
		c.Watches[0].Destination = DestinationForward
		c.Watches[0].Tag = "app.tag"
		c.FileSink = nil
		c.Forward = &ForwardConfig{Address: "tcp://" + r.Addr, RequireAck: true,
			MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, AckTimeout: 2 * time.Second}
		if mod != nil {
			mod(c)
		}
	})
	return e
}

// startForward starts e's collector with its real Forward sink.
func (e *env) startForward() {
	e.sink = &memSink{} // unused: the forward sink is not injected
	e.start()
}

func TestForwardDelivers(t *testing.T) {
	r := forwardtest.New(t)
	e := forwardEnv(t, r, nil)
	e.startForward()
	want := seq("fwd", 1, 2000)
	e.write("a.log", want...)
	waitFor(10*time.Second, func() bool { return len(r.Lines()) >= len(want) })
	time.Sleep(100 * time.Millisecond)
	if err := sameMultiset(r.Lines(), want); err != nil {
		t.Fatal(err)
	}
	ent := r.Entries()[0]
	if ent.Tag != "app.tag" || ent.Record["namespace"] != "ns" || ent.Record["pod"] != "pod" || ent.Record["pod_uid"] != "uid-1" ||
		ent.Record["container"] != "app" || ent.Record["path"] != "/var/log/app/a.log" || time.Since(ent.Time) > time.Minute {
		t.Errorf("entry %+v", ent)
	}
}

// TestForwardEndpointOutage: the endpoint is down for a while, then
// returns; every line arrives once (per chunk id), batches stay bounded.
// The outage is 30 s as in the issue unless -short (3 s).
func TestForwardEndpointOutage(t *testing.T) {
	outage := 30 * time.Second
	if testing.Short() {
		outage = 3 * time.Second
	}
	if s := os.Getenv("LOGFWD_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		outage = d
	}
	t.Parallel()
	r := forwardtest.New(t)
	e := forwardEnv(t, r, func(c *Config) { c.MaxBatchBytes = 32 << 10 })
	e.startForward()
	first := seq("before", 1, 500)
	e.write("a.log", first...)
	waitFor(5*time.Second, func() bool { return len(r.Lines()) >= len(first) })
	r.Down()
	during := seq("during", 1, 20000)
	start := time.Now()
	for i := 0; i < 10; i++ { // written while the endpoint is down
		e.write("a.log", during[i*2000:(i+1)*2000]...)
		time.Sleep(outage / 20)
	}
	time.Sleep(outage - time.Since(start))
	if s := e.c.Stats(); s.SinkErrors == 0 {
		t.Errorf("no sink errors during the outage")
	}
	r.Up()
	want := concat(first, during)
	if !waitFor(30*time.Second, func() bool { return len(r.Lines()) >= len(want) }) {
		t.Fatalf("after recovery got %d of %d lines", len(r.Lines()), len(want))
	}
	time.Sleep(200 * time.Millisecond)
	if err := sameMultiset(r.Lines(), want); err != nil {
		t.Fatal(err)
	}
	if r.MaxChunkBytes() > 2*(32<<10)+4096 {
		t.Errorf("a chunk of %d bytes: batches are not bounded", r.MaxChunkBytes())
	}
	t.Logf("outage %v: %d resent chunks deduplicated by chunk id", outage, r.Resent())
}

// TestForwardUnixSocket: the same protocol over a unix socket.
func TestForwardUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fwd.sock")
	r := forwardtest.NewUnix(t, sock)
	e := forwardEnv(t, r, func(c *Config) { c.Forward.Address = "unix://" + sock })
	e.startForward()
	e.write("a.log", "over unix")
	waitFor(5*time.Second, func() bool { return len(r.Lines()) >= 1 })
	if err := sameMultiset(r.Lines(), []string{"over unix"}); err != nil {
		t.Fatal(err)
	}
}
