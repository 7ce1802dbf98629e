package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-units"
	"github.com/pelletier/go-toml/v2"

	"github.com/cci-shim/cci-shim/config"
)

// confDir is an /etc/containerd with a main config importing conf.d, as
// containerd 2's built-in default does, and the given drop-ins in conf.d.
func confDir(t *testing.T, extra string, dropins ...string) (dir, main string) {
	t.Helper()
	dir = t.TempDir()
	confd := filepath.Join(dir, "conf.d")
	if err := os.MkdirAll(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range dropins {
		if err := os.WriteFile(filepath.Join(confd, filepath.Base(d)), readFile(t, d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main = filepath.Join(dir, "config.toml")
	text := fmt.Sprintf("version = 3\nimports = [%q]\n%s", confd+"/*.toml", extra)
	if err := os.WriteFile(main, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, main
}

func dump(t *testing.T, containerd, main string) map[string]any {
	t.Helper()
	out, err := exec.Command(containerd, "--config", main, "config", "dump").Output()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, out)
	}
	var m map[string]any
	if err := toml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func get(m any, keys ...string) any {
	for _, k := range keys {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[k]
	}
	return m
}

// Annotations the shim reads; each must pass pod_annotations (containerd
// matches them with path.Match). cci-agent check holds the full list.
var shimAnnotations = []string{"coordinator.cci.io/hostpath-replacement", "resources.cci.io/containers", "shm.cci.io/size",
	"logs.cci.io/policies", "gpu.cci.io/count", "throttle.cci.io/stdio-bps", "monitoring.cci.io/metrics-port"}

// containerd itself reads the drop-ins: the cci runtime, its annotations,
// its node config, and the rootfs each variant gives it.
func TestDropInsAsContainerdReadsThem(t *testing.T) {
	containerd := tool(t, "containerd")
	want := config.Default().Rootfs.SizeBytes
	for _, tc := range []struct {
		name        string
		dropins     []string
		snapshotter string
	}{
		{"production", []string{"containerd/cci-runtime.toml", "containerd/cci-snapshotter-devmapper.toml"}, "devmapper"},
		{"development", []string{"containerd/cci-runtime.toml", "containerd/cci-snapshotter-blockfile.toml"}, "blockfile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, main := confDir(t, "", tc.dropins...)
			d := dump(t, containerd, main)
			plugins := d["plugins"]
			cci := get(plugins, "io.containerd.cri.v1.runtime", "containerd", "runtimes", "cci")
			if get(cci, "runtime_type") != "io.containerd.cci.v2" || get(cci, "snapshotter") != tc.snapshotter ||
				get(cci, "options", "ConfigPath") != config.DefaultPath || get(cci, "sandboxer") != "podsandbox" {
				t.Fatalf("cci runtime = %v", cci)
			}
			pats, _ := get(cci, "pod_annotations").([]any)
			for _, a := range shimAnnotations {
				ok := false
				for _, p := range pats {
					if m, _ := path.Match(p.(string), a); m {
						ok = true
					}
				}
				if !ok {
					t.Errorf("pod_annotations %v do not pass %s", pats, a)
				}
			}
			if get(plugins, "io.containerd.cri.v1.runtime", "containerd", "runtimes", "runc", "runtime_type") != "io.containerd.runc.v2" {
				t.Error("the drop-ins replaced containerd's runc runtime instead of adding to it")
			}
			switch tc.snapshotter {
			case "devmapper":
				size, err := units.RAMInBytes(get(plugins, "io.containerd.snapshotter.v1.devmapper", "base_image_size").(string))
				if err != nil || size != want {
					t.Errorf("devmapper base_image_size = %d bytes (%v), rootfs.size_bytes default %d", size, err, want)
				}
			case "blockfile":
				bf := get(plugins, "io.containerd.snapshotter.v1.blockfile")
				if get(bf, "scratch_file") != "/var/lib/cci-shim/blockfile/scratch.ext4" || get(bf, "root_path") != "/var/lib/cci-shim/blockfile/root" {
					t.Errorf("blockfile = %v (packaging/blockfile/setup.sh creates /var/lib/cci-shim/blockfile/{root,scratch.ext4})", bf)
				}
			}
		})
	}
}

// A node with the runtime drop-in but no thin pool keeps containerd and CRI
// working; the devmapper drop-in without its pool takes containerd's
// metadata store down with it, which is why only thinpool.sh links it.
func TestMissingPoolBreaksOnlyCCI(t *testing.T) {
	needRoot(t)
	containerd, ctr := tool(t, "containerd"), tool(t, "ctr")
	for _, tc := range []struct {
		name    string
		dropins []string
		want    map[string]string // plugin -> status
	}{
		{"runtime drop-in, pool missing", []string{"containerd/cci-runtime.toml"},
			map[string]string{"io.containerd.metadata.v1 bolt": "ok", "io.containerd.grpc.v1 cri": "ok", "io.containerd.cri.v1 runtime": "ok",
				"io.containerd.snapshotter.v1 devmapper": "skip"}},
		{"devmapper drop-in linked, pool missing", []string{"containerd/cci-runtime.toml", "containerd/cci-snapshotter-devmapper.toml"},
			map[string]string{"io.containerd.metadata.v1 bolt": "error", "io.containerd.snapshotter.v1 devmapper": "error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("/tmp", "cci-pkg-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			sock := filepath.Join(dir, "c.sock")
			extra := fmt.Sprintf("root = %q\nstate = %q\n[grpc]\n  address = %q\n[ttrpc]\n  address = %q\n"+
				"[plugins.\"io.containerd.cri.v1.runtime\".cni]\n  bin_dirs = [%q]\n  conf_dir = %q\n"+
				"[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n",
				filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "cni"), filepath.Join(dir, "cni"))
			_, main := confDir(t, extra, tc.dropins...)
			// The devmapper drop-in's root_path lives under the host's containerd root: point it here.
			if data, err := os.ReadFile(filepath.Join(filepath.Dir(main), "conf.d", "cci-snapshotter-devmapper.toml")); err == nil {
				data = []byte(strings.ReplaceAll(string(data), "/var/lib/containerd/devmapper", filepath.Join(dir, "devmapper")))
				os.WriteFile(filepath.Join(filepath.Dir(main), "conf.d", "cci-snapshotter-devmapper.toml"), data, 0o644)
			}
			cmd := exec.Command(containerd, "--config", main, "--log-level", "warn")
			logf, _ := os.Create(filepath.Join(dir, "containerd.log"))
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cmd.Process.Kill()
				cmd.Wait()
				logf.Close()
			}()
			var out []byte
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
				if out, err = exec.Command(ctr, "--address", sock, "plugins", "ls").CombinedOutput(); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("containerd does not serve: %v\n%s", err, out)
			}
			status := map[string]string{}
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) >= 4 {
					status[f[0]+" "+f[1]] = f[len(f)-1]
				}
			}
			for p, want := range tc.want {
				if status[p] != want {
					t.Errorf("plugin %s is %q, want %q", p, status[p], want)
				}
			}
		})
	}
}
