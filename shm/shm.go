// Package shm decides the size of a pod's /dev/shm (R10) and provides the
// host tmpfs that backs it.
//
// The size is a pure decision (Size): 64 MiB by default, else the pod
// annotation shm.cci.io/size, else the size of a Memory emptyDir that
// kubelet mounted at /dev/shm (its host tmpfs, read with statfs at the edge
// by HostSize); never more than the pod memory. The result is rounded up to
// whole pages so that a tmpfs mounted with size=N reports exactly N.
//
// The host side (Mount, Unmount; Linux only) mounts a tmpfs with size=N and
// mode=1777 at a host path. Both backends get /dev/shm as a bind mount of
// that path: runc enforces the tmpfs size directly, Kata sizes the guest
// tmpfs from statfs of the sandbox's /dev/shm bind source.
//
// It does not parse quantities or annotations (package sandbox does) and it
// does not stop a container with CAP_SYS_ADMIN from remounting /dev/shm.
package shm

import (
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"
)

// DefaultSize is the /dev/shm size when the pod asks for none.
const DefaultSize = 64 << 20

// PageSize is the granularity of tmpfs sizes.
const PageSize = 4096

// Source says where a size came from.
type Source string

const (
	FromDefault    Source = "default"
	FromAnnotation Source = "annotation shm.cci.io/size"
	FromEmptyDir   Source = "Memory emptyDir at /dev/shm"
)

// Input is what the size decision depends on. Zero means "not given".
type Input struct {
	Annotation int64 // bytes from the shm.cci.io/size annotation
	EmptyDir   int64 // bytes of the Memory emptyDir's host tmpfs
	PodMemory  int64 // normalised pod memory; 0 = unknown, no check
	Default    int64 // 0 means DefaultSize
}

// SizeError is returned when the requested size is not allowed. It unwraps
// to errdefs.ErrInvalidArgument.
type SizeError struct {
	Size      int64
	Source    Source
	PodMemory int64
}

func (e *SizeError) Error() string {
	if e.Size <= 0 {
		return fmt.Sprintf("/dev/shm size %d bytes (from %s) is not allowed; allowed: more than 0 and at most the pod memory", e.Size, e.Source)
	}
	return fmt.Sprintf("/dev/shm size %s (from %s) is larger than the pod memory %s; allowed: at most the pod memory (half of it is advised)",
		human(e.Size), e.Source, human(e.PodMemory))
}

func (e *SizeError) Unwrap() error { return errdefs.ErrInvalidArgument }

// Size decides the /dev/shm size: annotation, else emptyDir, else default;
// rounded up to whole pages; an error when it is not positive or larger
// than a known pod memory.
func Size(in Input) (int64, Source, error) {
	size, src := in.Default, FromDefault
	if size <= 0 {
		size = DefaultSize
	}
	switch {
	case in.Annotation != 0:
		size, src = in.Annotation, FromAnnotation
	case in.EmptyDir != 0:
		size, src = in.EmptyDir, FromEmptyDir
	}
	if size <= 0 || size > 1<<50 {
		return 0, src, &SizeError{Size: size, Source: src, PodMemory: in.PodMemory}
	}
	size = (size + PageSize - 1) / PageSize * PageSize
	if in.PodMemory > 0 && size > in.PodMemory {
		return 0, src, &SizeError{Size: size, Source: src, PodMemory: in.PodMemory}
	}
	return size, src, nil
}

func human(b int64) string {
	for _, u := range []struct {
		n    int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if b%u.n == 0 {
			return strconv.FormatInt(b/u.n, 10) + " " + u.name
		}
	}
	return strconv.FormatInt(b, 10) + " bytes"
}
