package podmetrics

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/procfs"
)

// The host's own table, parsed here and by prometheus/procfs (which the
// parser replaces in the shim), gives the same counters.
func TestParseNetDevMatchesProcfs(t *testing.T) {
	got, err := readNetDev("/proc/thread-self")
	if err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewFS("/proc/thread-self")
	if err != nil {
		t.Fatal(err)
	}
	nd, err := fs.NetDev()
	if err != nil {
		t.Fatal(err)
	}
	var want []InterfaceStats
	for name, l := range nd {
		if name == "lo" {
			continue
		}
		want = append(want, InterfaceStats{Name: name, RxBytes: l.RxBytes, RxPackets: l.RxPackets, RxErrors: l.RxErrors,
			RxDropped: l.RxDropped, TxBytes: l.TxBytes, TxPackets: l.TxPackets, TxErrors: l.TxErrors, TxDropped: l.TxDropped})
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
	// Counters move between the two reads; names and order must not.
	if len(got) != len(want) {
		t.Fatalf("parsed %d interfaces, procfs %d: %+v vs %+v", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i].Name != want[i].Name || got[i].RxBytes > want[i].RxBytes || got[i].TxBytes > want[i].TxBytes {
			t.Errorf("interface %d: parsed %+v, procfs (read after) %+v", i, got[i], want[i])
		}
	}
}

func TestParseNetDev(t *testing.T) {
	const head = "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
	got, err := parseNetDev(head +
		"    lo:  100 2 0 0 0 0 0 0  100 2 0 0 0 0 0 0\n" +
		"  veth-b2: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n" +
		"  eth0: 18446744073709551615 1 0 2 0 0 0 0 30 3 4 5 0 0 0 0\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []InterfaceStats{
		{Name: "eth0", RxBytes: 1<<64 - 1, RxPackets: 1, RxDropped: 2, TxBytes: 30, TxPackets: 3, TxErrors: 4, TxDropped: 5},
		{Name: "veth-b2", RxBytes: 1, RxPackets: 2, RxErrors: 3, RxDropped: 4, TxBytes: 9, TxPackets: 10, TxErrors: 11, TxDropped: 12},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if got, err := parseNetDev(head); err != nil || len(got) != 0 {
		t.Errorf("no interfaces: %v, %v", got, err)
	}
	for name, table := range map[string]string{
		"empty":        "",
		"no header":    "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
		"short line":   head + "eth0: 1 2 3\n",
		"long line":    head + "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n",
		"no colon":     head + "eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
		"no name":      head + "  : 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
		"negative":     head + "eth0: -1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
		"not a number": head + "eth0: 1 2 3 4 5 6 7 8 x 10 11 12 13 14 15 16\n",
		"over 64 bits": head + "eth0: 18446744073709551616 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
	} {
		if got, err := parseNetDev(table); err == nil {
			t.Errorf("%s: parsed %+v; want an error", name, got)
		} else if !strings.Contains(err.Error(), "net/dev") && !strings.Contains(err.Error(), "counter") && !strings.Contains(err.Error(), "line") {
			t.Errorf("%s: error %q does not say what is wrong", name, err)
		}
	}
}
