package packaging

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDM is a PATH with dmsetup, blockdev and modprobe that act on regular
// files: dmsetup keeps its tables in a state dir ("a reboot" empties it) and,
// like the kernel, formats a zeroed metadata superblock on create and
// refuses one that holds anything else.
const fakeDmsetup = `#!/bin/sh
state="$FAKE_DM_STATE"
echo "$*" >> "$state/calls"
case "$1" in
status)
	[ -f "$state/$2" ] || { echo "Device does not exist."; echo "Command failed."; exit 1; }
	echo "0 $(cut -d' ' -f2 "$state/$2") thin-pool 0 10/1000 0/2000 - rw discard_passdown queue_if_no_space - 1024" ;;
create)
	name="$2"; [ "$3" = "--table" ] || exit 2
	[ -f "$state/$name" ] && { echo "device-mapper: create ioctl on $name failed: Device or resource busy"; exit 1; }
	meta=$(echo "$4" | awk '{print $4}')
	magic=$(od -A n -t u8 -j 32 -N 8 "$meta" | tr -d ' ')
	if [ "$magic" != 27022010 ]; then
		[ -z "$(od -A n -t x1 -N 4096 -v "$meta" | tr -d ' \n0')" ] || { echo "device-mapper: reload ioctl failed: Invalid argument"; exit 1; }
		printf '\272\122\234\001\000\000\000\000' | dd of="$meta" bs=1 seek=32 conv=notrunc status=none
	fi
	echo "$4" > "$state/$name" ;;
*) exit 2 ;;
esac
`

type thinEnv struct {
	dir, bin, state, envFile, confd, dropin, data, meta string
}

func newThinEnv(t *testing.T) *thinEnv {
	t.Helper()
	d := t.TempDir()
	e := &thinEnv{dir: d, bin: filepath.Join(d, "bin"), state: filepath.Join(d, "dm"), envFile: filepath.Join(d, "etc/thinpool.env"),
		confd: filepath.Join(d, "conf.d"), dropin: filepath.Join(d, "share/cci-snapshotter-devmapper.toml"), data: filepath.Join(d, "data"), meta: filepath.Join(d, "meta")}
	for _, dir := range []string{e.bin, e.state, filepath.Dir(e.dropin)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string, mode os.FileMode) {
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(e.bin, "dmsetup"), fakeDmsetup, 0o755)
	write(filepath.Join(e.bin, "blockdev"), "#!/bin/sh\n[ \"$1\" = --getsz ] && echo $(( $(stat -c %s \"$2\") / 512 ))\n", 0o755)
	write(filepath.Join(e.bin, "modprobe"), "#!/bin/sh\nexit 0\n", 0o755)
	write(e.dropin, "version = 3\n", 0o644)
	for _, f := range []string{e.data, e.meta} {
		write(f, "", 0o600)
		if err := os.Truncate(f, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *thinEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	script, err := filepath.Abs("devmapper/thinpool.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(script, args...)
	cmd.Env = append(os.Environ(), "PATH="+e.bin+":"+os.Getenv("PATH"), "FAKE_DM_STATE="+e.state,
		"CCI_THINPOOL_ENV="+e.envFile, "CCI_CONTAINERD_CONFD="+e.confd, "CCI_DEVMAPPER_DROPIN="+e.dropin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (e *thinEnv) calls(t *testing.T) string {
	b, _ := os.ReadFile(filepath.Join(e.state, "calls"))
	return string(b)
}

func (e *thinEnv) linked(t *testing.T) bool {
	target, err := os.Readlink(filepath.Join(e.confd, "cci-snapshotter-devmapper.toml"))
	return err == nil && target == e.dropin
}

func (e *thinEnv) reboot(t *testing.T) {
	if err := os.RemoveAll(e.state); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.state, 0o755); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// First set-up, a rerun, a reboot: the pool comes back each time and its
// metadata is never zeroed.
func TestThinpoolCreateIsIdempotentAndNonDestructive(t *testing.T) {
	e := newThinEnv(t)
	out, err := e.run(t, "create", e.data, e.meta)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	meta := read(t, e.meta)
	if binary.LittleEndian.Uint64(meta[32:40]) != 27022010 {
		t.Fatal("the (fake) kernel did not format the metadata")
	}
	if got := string(read(t, e.envFile)); got != "DATA="+e.data+"\nMETA="+e.meta+"\nPOOL=cci-thinpool\n" {
		t.Errorf("env file %q", got)
	}
	if !e.linked(t) || !strings.Contains(e.calls(t), "create cci-thinpool --table 0 2048 thin-pool "+e.meta+" "+e.data+" 128 32768 1 skip_block_zeroing") {
		t.Fatalf("linked %v, calls:\n%s", e.linked(t), e.calls(t))
	}

	// Pretend the pool is in use: metadata the script must keep.
	copy(meta[100:], "live pool metadata")
	if err := os.WriteFile(e.meta, meta, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = e.run(t, "create", e.data, e.meta)
	if err != nil || !strings.Contains(out, "already active") || strings.Count(e.calls(t), "create ") != 1 {
		t.Fatalf("rerun: %v\n%s\ncalls:\n%s", err, out, e.calls(t))
	}
	if !bytes.Equal(read(t, e.meta), meta) {
		t.Fatal("rerunning create changed the metadata of a live pool")
	}

	// After a reboot: create reuses the metadata, activate does too.
	e.reboot(t)
	out, err = e.run(t, "create", e.data, e.meta)
	if err != nil || !strings.Contains(out, "reusing it, not zeroing it") || !bytes.Equal(read(t, e.meta), meta) {
		t.Fatalf("create after reboot: %v\n%s", err, out)
	}
	e.reboot(t)
	os.Remove(filepath.Join(e.confd, "cci-snapshotter-devmapper.toml"))
	out, err = e.run(t, "activate")
	if err != nil || !strings.Contains(out, "re-created") || !e.linked(t) || !bytes.Equal(read(t, e.meta), meta) {
		t.Fatalf("activate after reboot: %v (linked %v)\n%s", err, e.linked(t), out)
	}
	if out, err := e.run(t, "activate"); err != nil || !strings.Contains(out, "already active") {
		t.Fatalf("activate again: %v\n%s", err, out)
	}
	if out, err := e.run(t, "status"); err != nil || !strings.Contains(out, "thin-pool") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

func TestThinpoolRefusesForeignMetadata(t *testing.T) {
	e := newThinEnv(t)
	garbage := bytes.Repeat([]byte("ext4 or a database"), 1000)
	if err := os.WriteFile(e.meta, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := e.run(t, "create", e.data, e.meta)
	if err == nil || !strings.Contains(out, "refusing to overwrite it") || strings.Contains(e.calls(t), "create") || e.linked(t) {
		t.Fatalf("create over foreign data: %v\n%s\ncalls %q", err, out, e.calls(t))
	}
	if !bytes.Equal(read(t, e.meta), garbage) {
		t.Fatal("the metadata device was written")
	}
	out, err = e.run(t, "create", e.data, e.meta, "--wipe-metadata")
	if err != nil || !strings.Contains(out, "zeroing the superblock") || !e.linked(t) {
		t.Fatalf("--wipe-metadata: %v\n%s", err, out)
	}
}

// At boot, whatever is wrong, containerd must not get the devmapper drop-in.
func TestThinpoolActivateFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *thinEnv)
		want  string
	}{
		{"never created", func(e *thinEnv) {}, "run thinpool.sh create first"},
		{"device gone", func(e *thinEnv) {
			os.WriteFile(e.envFile, []byte("DATA="+e.data+"\nMETA="+e.dir+"/gone\nPOOL=cci-thinpool\n"), 0o600)
		}, "is missing"},
		{"metadata lost", func(e *thinEnv) {
			os.WriteFile(e.envFile, []byte("DATA="+e.data+"\nMETA="+e.meta+"\nPOOL=cci-thinpool\n"), 0o600)
		}, "not creating an empty pool under containerd's existing snapshots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newThinEnv(t)
			os.MkdirAll(filepath.Dir(e.envFile), 0o755)
			os.MkdirAll(e.confd, 0o755)
			if err := os.Symlink(e.dropin, filepath.Join(e.confd, "cci-snapshotter-devmapper.toml")); err != nil {
				t.Fatal(err)
			}
			tc.setup(e)
			out, err := e.run(t, "activate")
			if err == nil || !strings.Contains(out, tc.want) || e.linked(t) || strings.Contains(e.calls(t), "create") {
				t.Fatalf("activate: %v (linked %v)\n%s\ncalls %q", err, e.linked(t), out, e.calls(t))
			}
			if _, err := os.Lstat(filepath.Join(e.confd, "cci-snapshotter-devmapper.toml")); !os.IsNotExist(err) {
				t.Fatal("the drop-in link is still there")
			}
		})
	}
}
