package logfwd

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// FuzzJSONString: the hand-written encoder gives valid JSON that decodes
// to what encoding/json's own encoding decodes to (invalid UTF-8 becomes
// U+FFFD byte by byte), the same for string and []byte input.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `quote " back \ slash`, "tab\tcr\rnl\n", "\x00\x01\x1f\x7f",
		"héllo wörld ✓ 𝄞", "bad \xff\xfe utf8 \xe2\x82", strings.Repeat("abcdefg\"", 9), "\u2028\u2029<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a := appendJSONString(nil, s)
		if b := appendJSONString(nil, []byte(s)); string(a) != string(b) {
			t.Fatalf("string %q and []byte %q encodings differ", a, b)
		}
		if !json.Valid(a) {
			t.Fatalf("invalid JSON %q for %q", a, s)
		}
		ref, _ := json.Marshal(s)
		var got, want string
		if err := json.Unmarshal(a, &got); err != nil {
			t.Fatal(err)
		}
		json.Unmarshal(ref, &want)
		if got != want {
			t.Fatalf("%q decodes to %q; encoding/json's to %q", s, got, want)
		}
	})
}

// TestFileSinkRecordJSON: a record encoded as the collector does it (text
// as bytes, cached time and head) equals the one Send encodes, and both
// decode to the record's fields.
func TestFileSinkRecordJSON(t *testing.T) {
	s := &fileSink{pod: PodIdentity{Namespace: "ns \"q\"", Name: "pod", UID: "u-1"}}
	now := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	recs := []Record{
		{Time: now, Container: "app", Path: "/var/log/a.log", Line: "one \x01 \xff"},
		{Time: now, Container: "app", Path: "/var/log/b.log", Line: "part", Partial: true, PartIndex: 3, PartLast: true},
	}
	var viaSend, viaEmit []byte
	var head jsonHeadCache
	for i := range recs {
		viaSend = s.AppendRecord(viaSend, s.AppendTime(nil, recs[i].Time), &jsonHeadCache{}, &recs[i], nil)
		r := recs[i]
		line := []byte(r.Line)
		r.Line = ""
		viaEmit = s.AppendRecord(viaEmit, s.AppendTime(nil, now), &head, &r, line)
	}
	if string(viaSend) != string(viaEmit) {
		t.Fatalf("encodings differ:\n%s\n%s", viaSend, viaEmit)
	}
	for i, l := range strings.SplitAfter(strings.TrimSuffix(string(viaSend), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		r := recs[i]
		if m["namespace"] != `ns "q"` || m["path"] != r.Path || m["log"] != strings.ToValidUTF8(r.Line, "\ufffd") ||
			m["time"] != "2026-01-02T02:04:05.0000006Z" || (m["partial"] == true) != r.Partial {
			t.Errorf("line %d decodes to %v", i, m)
		}
		if r.Partial && (m["partial_index"] != float64(3) || m["partial_last"] != true) {
			t.Errorf("line %d partial fields %v", i, m)
		}
	}
}

// TestPlain8: the word test agrees with the byte table on every byte in
// every position.
func TestPlain8(t *testing.T) {
	for c := 0; c < 256; c++ {
		for pos := 0; pos < 8; pos++ {
			w := []byte("abcdefgh")
			w[pos] = byte(c)
			var x uint64
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(w[i])
			}
			if got := plain8(x); got != jsonPlain[c] {
				t.Fatalf("byte %#x at %d: plain8 %v, table %v", c, pos, got, jsonPlain[c])
			}
		}
	}
}

func BenchmarkJSONString(b *testing.B) {
	line := []byte(strings.Repeat("GET /index.html HTTP/1.1 200 ", 4))
	b.SetBytes(int64(len(line)))
	buf := make([]byte, 0, 256)
	for b.Loop() {
		buf = appendJSONString(buf[:0], line)
	}
}
