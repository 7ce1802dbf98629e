package sandbox

import (
	"debug/elf"
	"encoding/binary"
	"fmt"

	"github.com/containerd/errdefs"
)

// ArchError says a container's entrypoint is built for another architecture
// (R6). It unwraps to errdefs.ErrFailedPrecondition.
type ArchError struct {
	Container  string
	Entrypoint string
	ImageArch  string // GOARCH name, e.g. arm64
	ELFMachine string // e.g. aarch64
	HostArch   string
}

func (e *ArchError) Error() string {
	return fmt.Sprintf("container %q: image architecture %s does not match host architecture %s (entrypoint %s is an ELF %s binary)",
		e.Container, e.ImageArch, e.HostArch, e.Entrypoint, e.ELFMachine)
}

func (e *ArchError) Unwrap() error { return errdefs.ErrFailedPrecondition }

// elfArch reads the architecture from the first 20 bytes of an ELF file.
// ok is false for anything that is not an ELF header of a known machine.
func elfArch(h []byte) (goarch, machine string, ok bool) {
	if len(h) < 20 || string(h[:4]) != elf.ELFMAG {
		return "", "", false
	}
	var bo binary.ByteOrder
	switch elf.Data(h[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		bo = binary.LittleEndian
	case elf.ELFDATA2MSB:
		bo = binary.BigEndian
	default:
		return "", "", false
	}
	is64 := elf.Class(h[elf.EI_CLASS]) == elf.ELFCLASS64
	switch m := elf.Machine(bo.Uint16(h[18:20])); {
	case m == elf.EM_X86_64:
		return "amd64", "x86-64", true
	case m == elf.EM_AARCH64:
		return "arm64", "aarch64", true
	case m == elf.EM_386:
		return "386", "i386", true
	case m == elf.EM_ARM:
		return "arm", "arm", true
	case m == elf.EM_PPC64 && bo == binary.LittleEndian:
		return "ppc64le", "ppc64le", true
	case m == elf.EM_PPC64:
		return "ppc64", "ppc64", true
	case m == elf.EM_S390:
		return "s390x", "s390x", true
	case m == elf.EM_RISCV && is64:
		return "riscv64", "riscv64", true
	case m == elf.EM_LOONGARCH:
		return "loong64", "loongarch64", true
	case m == elf.EM_MIPS && is64 && bo == binary.LittleEndian:
		return "mips64le", "mips64el", true
	}
	return "", "", false
}

// compatible reports whether a host of hostArch runs binaries of arch.
func compatible(hostArch, arch string) bool {
	return arch == hostArch || hostArch == "amd64" && arch == "386"
}

// checkELF returns an *ArchError when header is an ELF binary for an
// architecture the host does not run; scripts and unknown files pass.
func checkELF(container, entrypoint string, header []byte, hostArch string) error {
	arch, machine, ok := elfArch(header)
	if !ok || compatible(hostArch, arch) {
		return nil
	}
	return &ArchError{Container: container, Entrypoint: entrypoint, ImageArch: arch, ELFMachine: machine, HostArch: hostArch}
}
