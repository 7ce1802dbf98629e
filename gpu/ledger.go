package gpu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Allocation is one pod's GPUs in the ledger.
type Allocation struct {
	PodID   string    `json:"podId"`
	Devices []Device  `json:"devices"`
	Since   time.Time `json:"since"`
}

// ledgerFile is the on-disk form of the ledger.
type ledgerFile struct {
	Version int                    `json:"version"`
	Pods    map[string]*Allocation `json:"pods"`
}

const ledgerVersion = 1

// Ledger gives each GPU to at most one pod at a time, node-wide.
//
// The state is a JSON file (Config.LedgerPath) replaced atomically (write a
// temporary file, fsync, rename, fsync the directory). Every operation holds a
// flock on a sibling ".lock" file — not on the ledger itself, whose inode each
// rename replaces — so shim processes (one per pod) and goroutines serialise.
// A shim that dies holding the lock releases it with its file descriptors; its
// allocation stays until Release or Reconcile.
type Ledger struct {
	path    string
	offered func([]Device) []string
	log     *slog.Logger
}

// NewLedger returns the ledger in cfg.StateDir. Driver versions pods may ask for
// are cfg.OfferedDrivers.
func NewLedger(cfg Config, log *slog.Logger) *Ledger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ledger{path: cfg.LedgerPath(), offered: cfg.OfferedDrivers, log: log}
}

// Path is the ledger file.
func (l *Ledger) Path() string { return l.path }

// Allocate gives podID the GPUs req asks for out of inv, or returns the pod's
// existing allocation (a retried Create, another container of the same pod). On
// error nothing is allocated; tenant-facing errors are *RequestError.
func (l *Ledger) Allocate(podID string, req Request, inv []Device) ([]Device, error) {
	if podID == "" {
		return nil, errors.New("allocating gpus: empty pod id")
	}
	var got []Device
	err := l.update(func(lf *ledgerFile) error {
		if a, ok := lf.Pods[podID]; ok {
			got = a.Devices
			return errUnchanged
		}
		used := map[string]string{}
		for _, a := range lf.Pods {
			for _, d := range a.Devices {
				used[d.UUID] = a.PodID
			}
		}
		picked, err := pick(req, inv, used, l.offered(inv))
		if err != nil {
			return err
		}
		if len(picked) == 0 {
			return errUnchanged
		}
		lf.Pods[podID] = &Allocation{PodID: podID, Devices: picked, Since: time.Now().UTC()}
		got = picked
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("allocating gpus for pod %s: %w", podID, err)
	}
	l.log.Info("gpus allocated", "pod", podID, "gpus", uuids(got))
	return got, nil
}

// Release frees podID's GPUs; releasing a pod without GPUs is not an error.
func (l *Ledger) Release(podID string) error {
	var freed []Device
	err := l.update(func(lf *ledgerFile) error {
		a, ok := lf.Pods[podID]
		if !ok {
			return errUnchanged
		}
		freed = a.Devices
		delete(lf.Pods, podID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("releasing gpus of pod %s: %w", podID, err)
	}
	if len(freed) > 0 {
		l.log.Info("gpus released", "pod", podID, "gpus", uuids(freed))
	}
	return nil
}

// Reconcile frees the GPUs of every pod not in live (sandboxes gone while their
// shim was dead) and returns those pod ids, sorted.
func (l *Ledger) Reconcile(live map[string]bool) ([]string, error) {
	var gone []string
	err := l.update(func(lf *ledgerFile) error {
		for id := range lf.Pods {
			if !live[id] {
				gone = append(gone, id)
				delete(lf.Pods, id)
			}
		}
		if len(gone) == 0 {
			return errUnchanged
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconciling gpu ledger: %w", err)
	}
	sort.Strings(gone)
	for _, id := range gone {
		l.log.Warn("gpus of a dead sandbox released", "pod", id)
	}
	return gone, nil
}

// List returns every allocation, sorted by pod id.
func (l *Ledger) List() ([]Allocation, error) {
	unlock, err := lockFile(l.path+".lock", false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil // no state dir yet: nothing allocated
		}
		return nil, fmt.Errorf("listing gpu ledger: %w", err)
	}
	defer unlock()
	lf, err := l.read()
	if err != nil {
		return nil, fmt.Errorf("listing gpu ledger: %w", err)
	}
	out := make([]Allocation, 0, len(lf.Pods))
	for _, a := range lf.Pods {
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PodID < out[j].PodID })
	return out, nil
}

// errUnchanged tells update that fn succeeded without changing the ledger.
var errUnchanged = errors.New("unchanged")

// update runs fn on the ledger under the exclusive lock and writes the result.
func (l *Ledger) update(fn func(*ledgerFile) error) error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	unlock, err := lockFile(l.path+".lock", true)
	if err != nil {
		return err
	}
	defer unlock()
	lf, err := l.read()
	if err != nil {
		return err
	}
	if err := fn(lf); err != nil {
		if errors.Is(err, errUnchanged) {
			return nil
		}
		return err
	}
	return l.write(lf)
}

// read loads the ledger; a missing file is an empty ledger, a corrupt one is an
// error (resetting it would hand busy GPUs out twice).
func (l *Ledger) read() (*ledgerFile, error) {
	lf := &ledgerFile{Version: ledgerVersion, Pods: map[string]*Allocation{}}
	b, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return lf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ledger: %w", err)
	}
	if err := json.Unmarshal(b, lf); err != nil {
		return nil, fmt.Errorf("parsing ledger %s (fix or remove it by hand): %w", l.path, err)
	}
	if lf.Version != ledgerVersion {
		return nil, fmt.Errorf("ledger %s has version %d, want %d", l.path, lf.Version, ledgerVersion)
	}
	if lf.Pods == nil {
		lf.Pods = map[string]*Allocation{}
	}
	return lf, nil
}

func (l *Ledger) write(lf *ledgerFile) error {
	b, err := json.MarshalIndent(lf, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding ledger: %w", err)
	}
	dir := filepath.Dir(l.path)
	tmp, err := os.CreateTemp(dir, ".gpu-ledger-*.tmp")
	if err != nil {
		return fmt.Errorf("writing ledger: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing ledger: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing ledger: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing ledger: %w", err)
	}
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return fmt.Errorf("replacing ledger: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing state dir: %w", err)
	}
	return nil
}

// pick chooses GPUs for req among inv, skipping used (uuid → pod). Pure.
func pick(req Request, inv []Device, used map[string]string, offered []string) ([]Device, error) {
	if req.DriverVersion != "" && !contains(offered, req.DriverVersion) {
		return nil, &RequestError{Field: AnnotationDriverVersion, Value: req.DriverVersion,
			Reason: "is not available on this node", Allowed: orNone(offered), Unavailable: true}
	}
	var match []Device
	for _, d := range inv {
		if req.Model == "" || ModelMatches(req.Model, d.Model) {
			match = append(match, d)
		}
	}
	if req.Model != "" && len(match) == 0 {
		return nil, &RequestError{Field: AnnotationModel, Value: req.Model,
			Reason: "is not available on this node", Allowed: orNone(models(inv)), Unavailable: true}
	}
	source := req.Source
	if source == "" {
		source = "gpu request"
	}
	switch {
	case len(req.IDs) > 0:
		var out []Device
		for _, id := range req.IDs {
			d, ok := findDevice(inv, id)
			if !ok {
				return nil, &RequestError{Field: source, Value: id, Reason: "is not a GPU of this node",
					Allowed: orNone(deviceNames(inv)), Unavailable: true}
			}
			if req.Model != "" && !ModelMatches(req.Model, d.Model) {
				return nil, &RequestError{Field: source, Value: id, Reason: fmt.Sprintf("is a %s, not a %s", d.Model, req.Model),
					Allowed: orNone(deviceNames(match)), Unavailable: true}
			}
			if _, busy := used[d.UUID]; busy {
				return nil, &RequestError{Field: source, Value: id, Reason: "is in use by another pod",
					Allowed: orNone(deviceNames(free(match, used))), Unavailable: true}
			}
			out = append(out, d)
		}
		return out, nil
	case req.All:
		if len(match) == 0 {
			return nil, &RequestError{Field: source, Value: "all", Reason: "asks for every GPU of a node that has none",
				Allowed: "a node with GPUs", Unavailable: true}
		}
		if f := free(match, used); len(f) < len(match) {
			return nil, &RequestError{Field: source, Value: "all",
				Reason:  fmt.Sprintf("asks for all %d GPUs but %d are in use by other pods", len(match), len(match)-len(f)),
				Allowed: fmt.Sprintf("at most %d free now", len(f)), Unavailable: true}
		}
		return match, nil
	default:
		f := free(match, used)
		if req.Count > len(f) {
			what := "GPUs"
			if req.Model != "" {
				what = fmt.Sprintf("%s GPUs", req.Model)
			}
			return nil, &RequestError{Field: source, Value: strconv.Itoa(req.Count),
				Reason:  fmt.Sprintf("asks for more %s than are free (node has %d, %d free)", what, len(match), len(f)),
				Allowed: fmt.Sprintf("at most %d now", len(f)), Unavailable: true}
		}
		return f[:req.Count], nil
	}
}

func findDevice(inv []Device, id string) (Device, bool) {
	for _, d := range inv {
		if strconv.Itoa(d.Index) == id || strings.EqualFold(d.UUID, id) {
			return d, true
		}
	}
	return Device{}, false
}

func free(inv []Device, used map[string]string) []Device {
	var out []Device
	for _, d := range inv {
		if _, busy := used[d.UUID]; !busy {
			out = append(out, d)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

func models(inv []Device) []string {
	var out []string
	for _, d := range inv {
		out = append(out, d.Model)
	}
	return dedup(out)
}

func deviceNames(inv []Device) []string {
	var out []string
	for _, d := range inv {
		out = append(out, fmt.Sprintf("%d (%s)", d.Index, d.UUID))
	}
	return out
}

func uuids(ds []Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.UUID)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
