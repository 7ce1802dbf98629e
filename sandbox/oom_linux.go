package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadOOMScoreAdjFloor reads the shim's own oom_score_adj
// (/proc/self/oom_score_adj): a process without CAP_SYS_RESOURCE cannot set
// a child below it, so it is the floor for process.oomScoreAdj.
func ReadOOMScoreAdjFloor() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, fmt.Errorf("reading oom_score_adj floor: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("reading oom_score_adj floor: %w", err)
	}
	return v, nil
}
