package tests

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

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
//
// Each case also reads back the filter loaded in a running container and
// evaluates it for an i386 exit. On a host whose kernel has no 32-bit
// syscall entry (IA32 emulation off, as in some VM guests) int $0x80
// faults before any filter sees it, so running the executable cannot tell
// the filters apart there and the filters are what is checked.
func TestPolicyCompatSyscalls(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the test executable is x86_64 code; this host is %s (CI runs on amd64)", runtime.GOARCH)
	}
	const exited, sigsys = 42, 128 + 31
	compat := hostRunsCompatSyscalls(t)
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
		if compat {
			if code := run(t, env, "runc", "--runtime", e2eenv.RuncRuntime); code != exited {
				t.Fatalf("containerd's runc: exit status %d, want %d: the test executable does not make its 32-bit exit", code, exited)
			}
			if code := run(t, env, "runc-seccomp", "--runtime", e2eenv.RuncRuntime, "--seccomp"); code != exited {
				t.Fatalf("containerd's runc with its default profile: exit status %d, want %d", code, exited)
			}
			if code := run(t, env, "cci", "--runtime", cciRuntime); code != sigsys {
				t.Errorf("cci: exit status %d, want %d (SIGSYS): the 32-bit syscall was admitted", code, sigsys)
			}
		}
		if !loadedFilterAdmitsI386(t, env, "runc-seccomp-filter", e2eenv.RuncRuntime, "--seccomp") {
			t.Fatal("containerd's runc with its default profile: the filter read back denies the i386 exit, which that profile admits")
		}
		if loadedFilterAdmitsI386(t, env, "cci-filter", cciRuntime) {
			t.Error("cci: the seccomp filter loaded in the container admits the i386 exit")
		}
		assertClean(t, env)
	})
	t.Run("allow_compat_syscalls", func(t *testing.T) {
		env := withImage(t, "policy.allow_compat_syscalls = true\n")
		if compat {
			if code := run(t, env, "cci", "--runtime", cciRuntime); code != exited {
				t.Errorf("cci with policy.allow_compat_syscalls: exit status %d, want %d", code, exited)
			}
		}
		if !loadedFilterAdmitsI386(t, env, "cci-filter", cciRuntime) {
			t.Error("cci with policy.allow_compat_syscalls: the seccomp filter loaded in the container denies the i386 exit")
		}
		assertClean(t, env)
	})
}

// hostRunsCompatSyscalls runs the i386 exit on the host itself: true when
// it exits 42, false when the kernel has no 32-bit syscall entry.
func hostRunsCompatSyscalls(t *testing.T) bool {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "i386-exit")
	if err := os.WriteFile(exe, i386Exit42(), 0o755); err != nil {
		t.Fatal(err)
	}
	err := exec.Command(exe).Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() == 42 {
			return true
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGSEGV {
			t.Log("this host's kernel has no 32-bit syscall entry: int $0x80 faults (SIGSEGV) before any seccomp filter sees it, so the containers' filters are read back and evaluated instead of told apart by running the executable")
			return false
		}
	}
	t.Fatalf("the i386 exit on the host: %v, want exit status 42 or SIGSEGV", err)
	return false
}

// nrI386Exit is exit in the i386 syscall table, which x/sys/unix has only
// in its 386 build.
const nrI386Exit = 1

// loadedFilterAdmitsI386 runs a sleeping busybox container with runtime rt
// and ctr flags extra, reads back the seccomp filters its process runs
// under and reports whether they let an i386 exit through. The same
// filters must admit the x86_64 exit_group, or the reading is wrong.
func loadedFilterAdmitsI386(t *testing.T, env *e2eenv.Env, id, rt string, extra ...string) bool {
	t.Helper()
	args := append([]string{"-d", "--runtime", rt}, extra...)
	if _, errOut, err := env.CtrRun(append(args, env.Image, id, "sleep", "600")...); err != nil {
		t.Fatalf("ctr run %s: %v: %s", id, err, errOut)
	}
	defer func() {
		env.Ctr("task", "rm", "-f", id)
		env.Ctr("container", "rm", id)
	}()
	filters := seccompFilters(t, taskPid(t, env, id))
	if len(filters) == 0 {
		t.Fatalf("%s: the container's process runs under no seccomp filter", id)
	}
	native := seccompAction(t, filters, unix.SYS_EXIT_GROUP, unix.AUDIT_ARCH_X86_64)
	if native != unix.SECCOMP_RET_ALLOW {
		t.Fatalf("%s: the filter read back returns %#x for the x86_64 exit_group, which every profile admits", id, native)
	}
	i386 := seccompAction(t, filters, nrI386Exit, unix.AUDIT_ARCH_I386)
	t.Logf("%s: %d filter(s), %d instructions in the newest; i386 exit: %#x", id, len(filters), len(filters[0]), i386)
	return i386 == unix.SECCOMP_RET_ALLOW
}

// seccompFilters reads the seccomp filters of process pid, newest first
// (PTRACE_SECCOMP_GET_FILTER, which needs the process stopped under
// ptrace by the calling thread).
func seccompFilters(t *testing.T, pid int) [][]bpf.RawInstruction {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		t.Fatalf("ptrace attach %d: %v", pid, err)
	}
	defer unix.PtraceDetach(pid)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		t.Fatalf("waiting for %d to stop: %v", pid, err)
	}
	getFilter := func(i int, buf []unix.SockFilter) (int, unix.Errno) {
		var p uintptr
		if len(buf) > 0 {
			p = uintptr(unsafe.Pointer(&buf[0]))
		}
		n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), uintptr(i), p, 0, 0)
		return int(n), errno
	}
	var filters [][]bpf.RawInstruction
	for i := 0; ; i++ {
		n, errno := getFilter(i, nil)
		if errno == unix.ENOENT {
			return filters
		}
		if errno != 0 {
			t.Fatalf("PTRACE_SECCOMP_GET_FILTER %d of %d: %v", i, pid, errno)
		}
		prog := make([]unix.SockFilter, n)
		if _, errno := getFilter(i, prog); errno != 0 {
			t.Fatalf("PTRACE_SECCOMP_GET_FILTER %d of %d: %v", i, pid, errno)
		}
		raw := make([]bpf.RawInstruction, n)
		for j, ins := range prog {
			raw[j] = bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
		}
		filters = append(filters, raw)
	}
}

// seccompAction evaluates the filters for syscall nr of architecture arch
// with zero arguments, as the kernel does: every filter runs and the action
// of highest precedence wins, the lowest as a signed 32-bit value of its
// action bits (KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, ..., ALLOW).
func seccompAction(t *testing.T, filters [][]bpf.RawInstruction, nr, arch uint32) uint32 {
	t.Helper()
	// struct seccomp_data is native-endian; x/net/bpf loads words big-endian
	// from its input, so each 32-bit word is stored as the VM reads it.
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], arch)
	action := uint32(unix.SECCOMP_RET_ALLOW)
	for i, raw := range filters {
		prog, ok := bpf.Disassemble(raw)
		if !ok {
			t.Fatalf("filter %d: an instruction x/net/bpf does not decode", i)
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatalf("filter %d: %v", i, err)
		}
		ret, err := vm.Run(data)
		if err != nil {
			t.Fatalf("filter %d: %v", i, err)
		}
		if r := uint32(ret); int32(r&unix.SECCOMP_RET_ACTION_FULL) < int32(action&unix.SECCOMP_RET_ACTION_FULL) {
			action = r
		}
	}
	return action
}
