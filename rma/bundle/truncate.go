package bundle

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

// lineSlack is how far a cut moves to land on a line boundary.
const lineSlack = 4096

// truncate cuts the largest files down to a common size so that all of them
// together fit in limit bytes ("water filling": small files stay whole). A cut
// file gets a marker line and keeps its beginning, or its end when tail is
// set. It returns one Truncation per cut file and per file whose capture
// already dropped bytes.
func truncate(files []*content, limit int64) []Truncation {
	out := []Truncation{}
	var total, largest int64
	for _, f := range files {
		n := int64(len(f.data))
		total += n
		largest = max(largest, n)
	}
	level := largest
	if total > limit {
		// The largest level at which sum(min(size, level)) <= max.
		lo, hi := int64(0), largest
		for lo < hi {
			mid := lo + (hi-lo+1)/2
			var sum int64
			for _, f := range files {
				sum += min(int64(len(f.data)), mid)
			}
			if sum <= limit {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		level = lo
	}
	for _, f := range files {
		orig := int64(len(f.data)) + f.dropped
		if int64(len(f.data)) > level {
			f.data = cut(f.data, level, orig, f.tail)
		}
		if kept := int64(len(f.data)); kept < orig {
			out = append(out, Truncation{File: f.name, OriginalSize: orig, KeptSize: kept})
		}
	}
	return out
}

func cut(data []byte, level, orig int64, tail bool) []byte {
	marker := fmt.Sprintf("[hsm-agent: truncated to fit the bundle size cap; original size %d bytes, see manifest.json]\n", orig)
	if level <= int64(len(marker)) {
		return data[:startOfRune(data, int(level))]
	}
	keep := int(level) - len(marker)
	if tail {
		start := len(data) - keep
		if i := bytes.IndexByte(data[start:min(len(data), start+lineSlack)], '\n'); i >= 0 {
			start += i + 1
		} else {
			for start < len(data) && !utf8.RuneStart(data[start]) {
				start++
			}
		}
		return append([]byte(marker), data[start:]...)
	}
	end := keep
	if i := bytes.LastIndexByte(data[max(0, end-lineSlack):end], '\n'); i >= 0 {
		end = max(0, end-lineSlack) + i + 1
	} else {
		end = startOfRune(data, end)
	}
	out := append([]byte{}, data[:end]...)
	if end > 0 && out[end-1] != '\n' {
		// Keep the marker on its own line without exceeding level.
		out = out[:startOfRune(out, end-1)]
		out = append(out, '\n')
	}
	return append(out, marker...)
}

// startOfRune moves i back to the start of a UTF-8 sequence.
func startOfRune(b []byte, i int) int {
	for i > 0 && i < len(b) && !utf8.RuneStart(b[i]) {
		i--
	}
	return i
}
