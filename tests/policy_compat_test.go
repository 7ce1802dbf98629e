package tests

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// i386Image's entrypoint is an x86_64 executable that exits with status 42
// through the 32-bit syscall ABI (int $0x80, i386 exit).
const i386Image = "localhost/cci/i386-exit:test"

// i386Exit42 is a static x86_64 ELF executable of one loadable segment
// whose code is: mov $1, %eax; mov $42, %ebx; int $0x80.
func i386Exit42() []byte {
	const base, code = 0x400000, 64 + 56
	text := []byte{0xb8, 0x01, 0, 0, 0, 0xbb, 0x2a, 0, 0, 0, 0xcd, 0x80}
	h := elfHeader(elf.EM_X86_64)
	binary.LittleEndian.PutUint64(h[24:], base+code) // e_entry
	binary.LittleEndian.PutUint16(h[56:], 1)         // e_phnum
	var b bytes.Buffer
	b.Write(h)
	binary.Write(&b, binary.LittleEndian, elf.Prog64{
		Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X),
		Vaddr: base, Paddr: base, Filesz: code + uint64(len(text)), Memsz: code + uint64(len(text)), Align: 0x1000,
	})
	b.Write(text)
	return b.Bytes()
}

// TestPolicyCompatSyscalls: on the runc backend the seccomp filter admits
// the native syscall ABI only (R25): a process that makes a 32-bit syscall
// is killed with SIGSYS, where containerd's runc, with or without its
// default profile, runs it; policy.allow_compat_syscalls keeps the 32-bit
// ABI for pods that need it.
func TestPolicyCompatSyscalls(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the test executable is x86_64 code; this host is %s (CI runs on amd64)", runtime.GOARCH)
	}
	const exited, sigsys = 42, 128 + 31
	// withImage starts an env with extraConfig and imports the image once.
	withImage := func(t *testing.T, extraConfig ...string) *e2eenv.Env {
		t.Helper()
		env := startEnv(t, false, extraConfig...)
		archive := filepath.Join(env.Dir, "i386-exit.tar")
		if err := writeELFImage(archive, i386Image, i386Exit42()); err != nil {
			t.Fatal(err)
		}
		if _, errOut, err := env.Ctr("images", "import", archive); err != nil {
			t.Fatalf("ctr images import: %v: %s", err, errOut)
		}
		return env
	}
	run := func(t *testing.T, env *e2eenv.Env, id string, args ...string) int {
		t.Helper()
		_, errOut, err := env.CtrRun(append(append([]string{"--rm"}, args...), i386Image, id)...)
		code := exitCode(t, err)
		t.Logf("ctr run %v: exit status %d %s", args, code, errOut)
		return code
	}

	t.Run("default", func(t *testing.T) {
		env := withImage(t)
		if code := run(t, env, "runc", "--runtime", e2eenv.RuncRuntime); code != exited {
			t.Fatalf("containerd's runc: exit status %d, want %d: the test executable does not make its 32-bit exit", code, exited)
		}
		if code := run(t, env, "runc-seccomp", "--runtime", e2eenv.RuncRuntime, "--seccomp"); code != exited {
			t.Fatalf("containerd's runc with its default profile: exit status %d, want %d", code, exited)
		}
		if code := run(t, env, "cci", "--runtime", cciRuntime); code != sigsys {
			t.Errorf("cci: exit status %d, want %d (SIGSYS): the 32-bit syscall was admitted", code, sigsys)
		}
		assertClean(t, env)
	})
	t.Run("allow_compat_syscalls", func(t *testing.T) {
		env := withImage(t, "policy.allow_compat_syscalls = true\n")
		if code := run(t, env, "cci", "--runtime", cciRuntime); code != exited {
			t.Errorf("cci with policy.allow_compat_syscalls: exit status %d, want %d", code, exited)
		}
		assertClean(t, env)
	})
}
