package logfwd

import "bytes"

// NUL bytes and sparse files (issue 9 item 11).
//
// A file's holes read as NUL bytes and cost the tenant no disk, and the
// JSON file sink escapes a NUL as \u0000 (6 bytes): a 10 MiB sparse file
// became a 63 MB sink file, and a sparse file's length has no bound. NUL
// is never text, so the rule is:
//
//   - NUL bytes are removed from every record, for both destinations, and
//     counted (Stats.NulBytes).
//   - A line that held nothing but NUL bytes is not forwarded
//     (Stats.NulLines). The 250 KiB line limit (R19) applies to the line as
//     written, NUL bytes included; parts left empty by the removal are not
//     forwarded and do not take a part index, except that a split line
//     whose earlier parts were forwarded always gets its last part.
//   - Holes are skipped without being read (lseek SEEK_DATA) and counted
//     as NUL bytes, so reading a sparse file costs time in proportion to
//     its data, not its length.
//
// What a tenant can make the sink write is then bounded by the bytes it
// really stores: at most 6 sink bytes per other control byte, plus the
// record's fixed fields (about 200 bytes with the pod identity) per line.

// stripNUL returns line without its NUL bytes (a copy when there were any)
// and how many were removed.
func stripNUL(line []byte) ([]byte, int) {
	n := len(line)
	out := make([]byte, 0, n)
	for len(line) > 0 {
		i := bytes.IndexByte(line, 0)
		if i < 0 {
			out = append(out, line...)
			break
		}
		out = append(out, line[:i]...)
		line = line[i+1:]
	}
	return out, n - len(out)
}
