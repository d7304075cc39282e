package daemon

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// trimExecutable drops this process's mappings of its own executable's
// read-only segments (code, read-only data) from its page tables
// (madvise MADV_DONTNEED), and returns how many bytes were resident.
// The pages stay in the kernel's page cache: whatever runs next faults
// back in only what it touches, as a minor fault (about a microsecond,
// with the kernel's fault-around mapping 64 KiB at a time). Start-up
// reads the config, migrates the store, makes keys and certificates and
// hashes a password, and so leaves most of the 20 MiB binary resident
// though an idle daemon runs a few hundred KiB of it; trimming makes the
// resident set the working set (docs/performance.md, "Idle memory").
//
// Only mappings with no anonymous (copied-on-write) page are trimmed: for
// those, DONTNEED would put back the file's bytes in place of what was
// written; a read-only segment of a Go executable has none, but a
// relocated one (RELRO) would.
func trimExecutable() int64 {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0
	}
	type span struct{ start, end, rss uintptr }
	var spans []span
	var cur *span
	anonOK := false
	flush := func() {
		if cur != nil && anonOK {
			spans = append(spans, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 6 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			flush()
			addr := strings.SplitN(f[0], "-", 2)
			start, err1 := strconv.ParseUint(addr[0], 16, 64)
			end, err2 := strconv.ParseUint(addr[1], 16, 64)
			if err1 == nil && err2 == nil && f[5] == exe && f[1][1] == '-' {
				cur = &span{start: uintptr(start), end: uintptr(end)}
				anonOK = false
			}
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			cur.rss = uintptr(kb) << 10
		case "Anonymous:":
			anonOK = kb == 0
		}
	}
	flush()
	var trimmed int64
	for _, s := range spans {
		// The raw call: unix.Madvise wants a []byte, which would need
		// unsafe to make from an address range we do not own as Go memory.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, s.start, s.end-s.start, unix.MADV_DONTNEED); errno == 0 {
			trimmed += int64(s.rss)
		}
	}
	return trimmed
}
