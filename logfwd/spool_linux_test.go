package logfwd

import (
	"context"
	"errors"
	"github.com/cci-shim/cci-shim/internal/forwardtest"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestSpoolDeliversAfterThePodIsGone (R18 across the pod's end): the pod's
// log volume is an ext4 image; its Forward destination is down when the pod
// goes, so Drain gives up; the volume is spooled (unmounted, moved); while
// the destination stays down DrainSpool keeps the entry; once it is up,
// DrainSpool mounts the image again (another loop device: the checkpoint is
// moved to it) and delivers the rest. Every line arrives exactly once and
// the entry is gone.
func TestSpoolDeliversAfterThePodIsGone(t *testing.T) {
	testutil.RequireRoot(t, "the log volume is a loop-mounted ext4 image")
	tmp := t.TempDir()
	image := filepath.Join(tmp, "images", "logs.img")
	vol := filepath.Join(tmp, "volumes", "logs")
	for _, d := range []string{filepath.Dir(image), vol} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Ext4Image(t, image)
	m := mount.Mount{Type: "ext4", Source: image, Options: []string{"loop"}}
	if err := m.Mount(vol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(vol, unix.MNT_DETACH) })

	r := forwardtest.New(t)
	cfg := Config{
		Root:           vol,
		Watches:        []Watch{{Container: "app", Dir: "/var/log/app", Pattern: "*.log", Destination: DestinationForward, Tag: "t"}},
		Pod:            PodIdentity{Namespace: "ns", Name: "pod", UID: "uid-1"},
		Forward:        &ForwardConfig{Address: "tcp://" + r.Addr, RequireAck: true, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, AckTimeout: time.Second},
		CheckpointPath: filepath.Join(tmp, "logs.checkpoint"),
		PollInterval:   time.Hour,
	}
	dir := HostDir(vol, "app", "/var/log/app")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(lines []string) {
		fh, err := os.OpenFile(filepath.Join(dir, "a.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			fh.WriteString(l + "\n")
		}
		fh.Close()
	}
	c, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	first := seq("before", 1, 200)
	write(first)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := c.Drain(ctx); err != nil {
		t.Fatalf("first drain, destination up: %v", err)
	}
	cancel()
	r.Down()
	second := seq("after", 1, 500)
	write(second)
	c2, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	err = c2.Drain(ctx)
	cancel()
	if !errors.Is(err, ErrNotDrained) {
		t.Fatalf("drain with the destination down: %v, want ErrNotDrained", err)
	}

	// The pod goes: the shim spools its volume. Another pod takes the loop
	// device it was on, so the spool mounts it on another device.
	var st unix.Stat_t
	if err := unix.Stat(vol, &st); err != nil {
		t.Fatal(err)
	}
	if err := mount.UnmountAll(vol, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	holder := filepath.Join(tmp, "holder.img")
	os.WriteFile(holder, make([]byte, 1<<20), 0o600)
	loop, err := mount.SetupLoop(holder, mount.LoopParams{Autoclear: true})
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	spool := filepath.Join(tmp, "logspool")
	if err := SpoolVolume(spool, "ns+pod", image, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(image); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the image was not moved into the spool: %v", err)
	}
	res, err := DrainSpool(context.Background(), spool, time.Second, slog.New(slog.DiscardHandler))
	if err != nil || res.Left != 1 || res.Drained != 0 {
		t.Fatalf("DrainSpool while the destination is down = %+v, %v; want the entry left", res, err)
	}
	r.Up()
	res, err = DrainSpool(context.Background(), spool, 10*time.Second, slog.New(slog.DiscardHandler))
	if err != nil || res.Drained != 1 {
		t.Fatalf("DrainSpool with the destination up = %+v, %v; want the entry delivered", res, err)
	}
	if err := sameMultiset(r.Lines(), concat(first, second)); err != nil {
		t.Fatal(err)
	}
	var held unix.Stat_t
	if unix.Fstat(int(loop.Fd()), &held) == nil && held.Rdev != st.Dev {
		t.Logf("the volume was on %d:%d; that device was taken by another", unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	if e, _ := os.ReadDir(spool); len(e) != 0 {
		t.Errorf("spool entries left after delivery: %v", e)
	}
}
