package logfwd

import "unicode/utf8"

// JSON encoding of file-sink records, written by hand for speed (the
// record layout is fixed; encoding/json would reflect per record).

// jsonHeadCache holds the part of a record between the time and the log
// text for one (container, path): it changes only when a file is renamed.
type jsonHeadCache struct {
	container, path string
	valid           bool
	head            []byte
}

// get returns `","namespace":…,"pod":…,"pod_uid":…,"container":…,"path":…,"log":`.
func (h *jsonHeadCache) get(pod PodIdentity, container, path string) []byte {
	if h.valid && h.container == container && h.path == path {
		return h.head
	}
	b := append(h.head[:0], `","namespace":`...)
	b = appendJSONString(b, pod.Namespace)
	b = append(b, `,"pod":`...)
	b = appendJSONString(b, pod.Name)
	b = append(b, `,"pod_uid":`...)
	b = appendJSONString(b, pod.UID)
	b = append(b, `,"container":`...)
	b = appendJSONString(b, container)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, path)
	b = append(b, `,"log":`...)
	h.container, h.path, h.valid, h.head = container, path, true, b
	return b
}

// jsonPlain marks the bytes copied as they are: printable ASCII but '"'
// and '\'.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString quotes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Runs of plain bytes, 8 at a time.
		for i+8 <= len(s) && plain8(uint64(s[i])|uint64(s[i+1])<<8|uint64(s[i+2])<<16|uint64(s[i+3])<<24|
			uint64(s[i+4])<<32|uint64(s[i+5])<<40|uint64(s[i+6])<<48|uint64(s[i+7])<<56) {
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if jsonPlain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func decodeRune[T string | []byte](s T) (rune, int) {
	var p [utf8.UTFMax]byte
	n := copy(p[:], s[:min(len(s), utf8.UTFMax)])
	return utf8.DecodeRune(p[:n])
}

// plain8 reports whether all 8 bytes of x are plain (jsonPlain): none is
// below 0x20, '"', '\\' or at or above 0x80. The bit tricks can only err
// towards "not plain" in a word that has such a byte, so any answer is
// exact.
func plain8(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	ctl := (x - lo*0x20) &^ x & hi
	q := x ^ (lo * '"')
	bs := x ^ (lo * '\\')
	return (ctl | (q-lo)&^q&hi | (bs-lo)&^bs&hi | x&hi) == 0
}
