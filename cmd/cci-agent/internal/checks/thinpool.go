package checks

import (
	"fmt"
	"strconv"
	"strings"
)

// ThinPoolStatus is a device-mapper thin pool's status line (the kernel's
// Documentation/admin-guide/device-mapper/thin-provisioning.rst).
type ThinPoolStatus struct {
	Failed     bool
	Metadata   Usage
	Data       Usage
	Mode       string // rw, ro or out_of_data_space
	NeedsCheck bool
}

// Usage is used/total blocks.
type Usage struct{ Used, Total uint64 }

// Fraction is Used/Total.
func (u Usage) Fraction() float64 {
	if u.Total == 0 {
		return 0
	}
	return float64(u.Used) / float64(u.Total)
}

func (u Usage) String() string {
	return fmt.Sprintf("%d/%d blocks (%.0f%%)", u.Used, u.Total, 100*u.Fraction())
}

// ParseThinPoolStatus parses `dmsetup status POOL`:
//
//	<start> <len> thin-pool <transaction id> <used meta>/<total meta> <used data>/<total data>
//	<held root> ro|rw|out_of_data_space [no_]discard_passdown error|queue_if_no_space needs_check|- ...
//
// or "<start> <len> thin-pool Fail".
func ParseThinPoolStatus(line string) (ThinPoolStatus, error) {
	f := strings.Fields(line)
	if len(f) < 4 || f[2] != "thin-pool" {
		return ThinPoolStatus{}, fmt.Errorf("not a thin pool: %q", line)
	}
	if f[3] == "Fail" {
		return ThinPoolStatus{Failed: true, Mode: "Fail"}, nil
	}
	if len(f) < 8 {
		return ThinPoolStatus{}, fmt.Errorf("short thin-pool status: %q", line)
	}
	var st ThinPoolStatus
	var err error
	if st.Metadata, err = parseUsage(f[4]); err != nil {
		return st, err
	}
	if st.Data, err = parseUsage(f[5]); err != nil {
		return st, err
	}
	st.Mode = f[7]
	for _, x := range f[8:] {
		if x == "needs_check" {
			st.NeedsCheck = true
		}
	}
	return st, nil
}

func parseUsage(s string) (Usage, error) {
	used, total, ok := strings.Cut(s, "/")
	if !ok {
		return Usage{}, fmt.Errorf("thin-pool usage %q: want used/total", s)
	}
	u, err1 := strconv.ParseUint(used, 10, 64)
	t, err2 := strconv.ParseUint(total, 10, 64)
	if err1 != nil || err2 != nil {
		return Usage{}, fmt.Errorf("thin-pool usage %q: want used/total", s)
	}
	return Usage{Used: u, Total: t}, nil
}
