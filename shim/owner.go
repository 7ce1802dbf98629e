package shim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/sandbox"
)

// resourcesFile, in the pod state dir, is the owner's journal: one JSON
// object per line, each a change to the stack (journalOp). lockFile
// serialises the processes that change it (the running shim, and
// containerd's delete subcommands after it died).
const (
	resourcesFile = "resources.json"
	lockFile      = "resources.lock"
)

// resourceKind says how a resource is released.
type resourceKind string

const (
	// resBackend is the pod's backend shim: Proc and Address. Released by
	// asking it to shut down (in process), else by killing Proc if it is
	// still the recorded process, then removing its socket.
	resBackend resourceKind = "backend"
	// resTask is a container created in the backend: Container, Path its
	// backend bundle. Released by deleting it in the backend (the Delete
	// RPC in process; the backend's delete subcommand after a crash).
	resTask resourceKind = "task"
	// resMounts is a directory the shim mounts into: every mount at or
	// under Path is detached, then Path is removed.
	resMounts resourceKind = "mounts"
	// resDir is a directory the shim created: removed with its contents.
	// Only ever a path under the pod's own state or volume dir.
	resDir resourceKind = "dir"
	// resVolumes is the pod's volume dir (/dev/shm tmpfs, hostPath
	// replacements, the log volume): sandbox.Cleanup.
	resVolumes resourceKind = "volumes"
	// resGPU is the pod's entry in the node's GPU ledger: Key.
	resGPU resourceKind = "gpu"
	// resLogs is the pod's log collector: Path is its persisted config.
	// Released by draining what is left (bounded), then stopping it.
	resLogs resourceKind = "logs"
	// resShim is this shim process: Proc and its socket, Address. After a
	// crash the delete subcommand kills Proc if it is still the recorded
	// process (a shim that hangs) and removes the socket.
	resShim resourceKind = "shim"
	// resRootfs is a container's rootfs loop device attached by the shim:
	// Path. The live closer detaches it; the kernel does after a crash
	// (autoclear), so the record needs no release.
	resRootfs resourceKind = "rootfs"
	// resCgroup is a pod cgroup parent the shim chose (Path, relative to
	// the hierarchies' root): removed once empty.
	resCgroup resourceKind = "cgroup"
	// resThrottle is a device limit the shim wrote into a sandbox's host
	// cgroup: Path the cgroup, Key "major:minor". Released by clearing it.
	resThrottle resourceKind = "throttle"
	// resPodLimits is kubelet's pod cgroup (Path) raised to the normalised
	// pod size (R5): Limits says what it was and what the shim set.
	// Released by writing the old caps back while the cgroup still has the
	// shim's.
	resPodLimits resourceKind = "podlimits"
)

// resource is one host resource of a pod, as persisted. Container is ""
// for resources of the whole pod.
type resource struct {
	Kind      resourceKind `json:"kind"`
	Container string       `json:"container,omitempty"`
	Path      string       `json:"path,omitempty"`
	Key       string       `json:"key,omitempty"`
	Address   string       `json:"address,omitempty"`
	Proc      procID       `json:"proc,omitzero"`
	Limits    *limitChange `json:"limits,omitempty"`
}

// limitChange is a cgroup's caps before and after the shim changed them.
type limitChange struct {
	Was sandbox.CgroupLimits `json:"was"`
	Set sandbox.CgroupLimits `json:"set"`
}

func (r resource) String() string {
	s := string(r.Kind)
	if r.Container != "" {
		s += " of " + r.Container
	}
	for _, v := range []string{r.Path, r.Key, r.Address} {
		if v != "" {
			s += " " + v
		}
	}
	return s
}

// releaser releases a resource that has no live closer: after a restart of
// the shim, or in the delete subcommand. It must be idempotent: a resource
// is recorded before it is created, so it may never have existed.
type releaser func(ctx context.Context, r resource) error

// owner holds every host resource of a pod as a stack, persisted in the pod
// state dir before each resource is created, so that the same teardown runs
// from Shutdown, from containerd's delete subcommand after a crash, and from
// any failed step. Entries created by this process carry a live closer;
// entries read back from disk are released by the releaser.
//
// The file is the truth shared between processes (the running shim, or
// containerd's delete subcommands after it died, which may run at once for
// several containers): every change is a line appended under the file lock,
// applied to whatever the other processes appended before it when the
// journal is read back. Appending is one small write, where rewriting the
// whole stack (write and rename) cost a pod's start more than the rest of
// admission on ext4. The file exists while the stack is not empty. mu
// guards the in-memory entries; neither lock is held while a resource is
// released, and no lock an RPC needs is held here.
type owner struct {
	dir      string
	fallback releaser

	mu    sync.Mutex
	stack []*entry // guarded by mu
}

type entry struct {
	res   resource
	close func(context.Context) error // nil: use the owner's releaser
	taken bool                        // being released by a walk; guarded by owner.mu
}

// loadOwner opens the pod's owner in dir, reading what an earlier process of
// the pod recorded.
func loadOwner(dir string, fallback releaser) (*owner, error) {
	o := &owner{dir: dir, fallback: fallback}
	err := o.locked(func() error {
		recs, err := o.read()
		for _, r := range recs {
			o.stack = append(o.stack, &entry{res: r})
		}
		return err
	})
	return o, err
}

// add records r (before the caller creates it) with its live closer.
func (o *owner) add(r resource, close func(context.Context) error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.appendOp(journalOp{Add: &r})
	if err == nil {
		o.stack = append(o.stack, &entry{res: r, close: close})
	}
	return err
}

// update replaces the newest entry of r's kind and container (e.g. the
// backend's record once its pid is known), and its closer if not nil.
func (o *owner) update(r resource, close func(context.Context) error) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.stack) - 1; i >= 0; i-- {
		e := o.stack[i]
		if e.res.Kind != r.Kind || e.res.Container != r.Container {
			continue
		}
		if err := o.appendOp(journalOp{Set: []resource{e.res, r}}); err != nil {
			return err
		}
		e.res = r
		if close != nil {
			e.close = close
		}
		return nil
	}
	return fmt.Errorf("no %s resource to update", r.Kind)
}

// has reports whether a resource of kind and container is held.
func (o *owner) has(kind resourceKind, container string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.ContainsFunc(o.stack, func(e *entry) bool { return e.res.Kind == kind && e.res.Container == container })
}

// find returns the newest record of kind for the pod (container "").
func (o *owner) find(kind resourceKind) (resource, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.stack) - 1; i >= 0; i-- {
		if r := o.stack[i].res; r.Kind == kind && r.Container == "" {
			return r, true
		}
	}
	return resource{}, false
}

// containersOnDisk returns the containers that hold resources according to
// the file, which other processes may have changed.
func (o *owner) containersOnDisk() ([]string, error) {
	var ids []string
	err := o.locked(func() error {
		recs, err := o.read()
		for _, r := range recs {
			if r.Container != "" && !slices.Contains(ids, r.Container) {
				ids = append(ids, r.Container)
			}
		}
		return err
	})
	return ids, err
}

// releaseContainer releases the resources of one container, newest first.
func (o *owner) releaseContainer(ctx context.Context, id string) error {
	return o.release(ctx, func(r resource) bool { return r.Container == id })
}

// releaseAll releases every resource of the pod, newest first.
func (o *owner) releaseAll(ctx context.Context) error {
	return o.release(ctx, func(resource) bool { return true })
}

// release pops and releases, newest first, every entry match selects. An
// entry whose release fails stays recorded, so that a later teardown
// retries it; the walk goes on with the others. Errors are joined.
func (o *owner) release(ctx context.Context, match func(resource) bool) error {
	var errs []error
	var failed []*entry
	for {
		e := o.takeNewest(match)
		if e == nil {
			break
		}
		var err error
		if e.close != nil {
			err = e.close(ctx)
		} else if o.fallback != nil {
			err = o.fallback(ctx, e.res)
		}
		if err != nil {
			log.G(ctx).WithError(err).WithField("resource", e.res.String()).Warn("releasing pod resource")
			errs = append(errs, fmt.Errorf("releasing %s: %w", e.res, err))
			failed = append(failed, e)
			continue
		}
		if err := o.forget(e); err != nil {
			errs = append(errs, err)
		}
	}
	o.mu.Lock()
	for _, e := range failed {
		e.taken = false
	}
	o.mu.Unlock()
	return errors.Join(errs...)
}

// takeNewest marks the newest matching entry not yet taken.
func (o *owner) takeNewest(match func(resource) bool) *entry {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := len(o.stack) - 1; i >= 0; i-- {
		if e := o.stack[i]; !e.taken && match(e.res) {
			e.taken = true
			return e
		}
	}
	return nil
}

// forget removes a released entry, from memory and from the file.
func (o *owner) forget(e *entry) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stack = slices.DeleteFunc(o.stack, func(x *entry) bool { return x == e })
	return o.appendOp(journalOp{Del: &e.res})
}

// forgetKind drops the newest record of kind and container without
// releasing it: something else (the backend's own Delete) already did.
func (o *owner) forgetKind(kind resourceKind, container string) error {
	o.mu.Lock()
	var found *entry
	for i := len(o.stack) - 1; i >= 0; i-- {
		if e := o.stack[i]; e.res.Kind == kind && e.res.Container == container {
			found = e
			break
		}
	}
	o.mu.Unlock()
	if found == nil {
		return nil
	}
	return o.forget(found)
}

// empty reports whether this process holds nothing.
func (o *owner) empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.stack) == 0
}

func lastIndex(recs []resource, r resource) int {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].equal(r) {
			return i
		}
	}
	return -1
}

// equal compares two records by value (Limits is a pointer: a record read
// back from the file is equal to the one that was written).
func (r resource) equal(x resource) bool {
	rl, xl := r.Limits, x.Limits
	r.Limits, x.Limits = nil, nil
	return r == x && (rl == xl || rl != nil && xl != nil && *rl == *xl)
}

// journalOp is one line of the journal: Add pushes a record, Del removes
// the newest record equal to it, Set replaces the newest record equal to
// Set[0] by Set[1] in place (its release order unchanged). A Del or Set of
// a record that is not there (another process removed it) does nothing.
type journalOp struct {
	Add *resource  `json:"add,omitempty"`
	Del *resource  `json:"del,omitempty"`
	Set []resource `json:"set,omitempty"`
}

// journalCompactBytes: a journal that has grown past this (a long-lived pod
// whose containers come and go) is rewritten as its stack.
const journalCompactBytes = 64 << 10

// appendOp appends op under the file lock. After a Del it reads the journal
// back: an empty stack removes the file, a long journal is compacted.
func (o *owner) appendOp(op journalOp) error {
	line, err := json.Marshal(op)
	if err != nil {
		return err
	}
	path := filepath.Join(o.dir, resourcesFile)
	return o.locked(func() error {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("recording pod resources: %w", err)
		}
		_, err = f.Write(append(line, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("recording pod resources: %w", err)
		}
		if op.Del == nil {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		recs, err := replay(data)
		switch {
		case err != nil:
			return err
		case len(recs) == 0:
			return os.Remove(path)
		case len(data) > journalCompactBytes:
			return writeFileAtomic(path, journal(recs))
		}
		return nil
	})
}

func (o *owner) read() ([]resource, error) {
	data, err := os.ReadFile(filepath.Join(o.dir, resourcesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return replay(data)
}

// replay applies the journal's lines in order and returns the stack. A last
// line without its newline was torn by a writer that died mid-write: it is
// dropped (an Add is written before its resource is created, so nothing of
// it exists; a Del's resource is released again, which releasers allow). A
// file that starts with '[' holds a stack written whole by an earlier
// version, followed by the lines this version appended to it.
func replay(data []byte) ([]resource, error) {
	var recs []resource
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("[")) {
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&recs); err != nil {
			return nil, fmt.Errorf("reading %s: %w", resourcesFile, err)
		}
		data = data[dec.InputOffset():]
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		if len(line) == 0 {
			continue
		}
		var op journalOp
		if err := json.Unmarshal(line, &op); err != nil {
			if i == len(lines)-1 {
				break // torn
			}
			return nil, fmt.Errorf("reading %s, line %d: %w", resourcesFile, i+1, err)
		}
		switch {
		case op.Add != nil:
			recs = append(recs, *op.Add)
		case op.Del != nil:
			if j := lastIndex(recs, *op.Del); j >= 0 {
				recs = slices.Delete(recs, j, j+1)
			}
		case len(op.Set) == 2:
			if j := lastIndex(recs, op.Set[0]); j >= 0 {
				recs[j] = op.Set[1]
			}
		default:
			return nil, fmt.Errorf("reading %s, line %d: not a change: %s", resourcesFile, i+1, line)
		}
	}
	return recs, nil
}

// journal is the stack as a journal of adds.
func journal(recs []resource) []byte {
	var b bytes.Buffer
	for i := range recs {
		line, _ := json.Marshal(journalOp{Add: &recs[i]}) // resource always marshals
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// locked runs fn holding the pod's file lock.
func (o *owner) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(o.dir, lockFile), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("locking pod state: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking pod state: %w", err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}
