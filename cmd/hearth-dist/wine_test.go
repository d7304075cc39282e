// The Wine harness of the Windows installer test: a throwaway prefix on a
// virtual display, Windows commands run to their end, hearth.exe runs
// started and awaited, and the bcryptprimitives forwarder Debian's Wine
// lacks for Go programs.

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// wine runs Windows programs in one throwaway Wine prefix.
type wine struct {
	t              *testing.T
	loader, server string
	prefix         string
	env            []string
}

func newWine(t *testing.T, tools map[string]string) *wine {
	w := &wine{t: t, loader: tools["wine64"], server: tools["wineserver64"], prefix: filepath.Join(t.TempDir(), "prefix")}
	w.env = append(os.Environ(), "WINEPREFIX="+w.prefix, "WINEARCH=win64", "WINEDEBUG=-all",
		// No Mono or Gecko install prompts: Hearth needs neither.
		"WINEDLLOVERRIDES=mscoree,mshtml=",
		// The tray needs a notification area, which Wine's explorer draws
		// only on a display.
		"DISPLAY="+startXvfb(t, tools["Xvfb"]))
	t.Cleanup(func() {
		// Ends this prefix's processes only (a daemon a failed check left).
		cmd := exec.Command(w.server, "-k")
		cmd.Env = w.env
		cmd.Run()
	})
	return w
}

// startXvfb starts a virtual X display for the test and returns its
// name; Xvfb picks a free display number and writes it to fd 3.
func startXvfb(t *testing.T, xvfb string) string {
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(xvfb, "-displayfd", "3", "-nolisten", "tcp", "-screen", "0", "800x600x24")
	cmd.ExtraFiles = []*os.File{wr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var num [16]byte
	n, err := r.Read(num[:])
	if err != nil {
		t.Fatalf("Xvfb gave no display: %v", err)
	}
	return ":" + strings.TrimSpace(string(num[:n]))
}

// run runs a Windows command to its end (up to 3 minutes) and returns
// its standard output. A process the command started may hold its
// output open after it ended or was killed: WaitDelay bounds that wait,
// which otherwise lasted until test-dist's own 20-minute timeout (the
// aborted uninstall once did, in CI), and a command that ended well
// while something else held its output counts as ended well.
func (w *wine) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.loader, args...)
	cmd.Env = w.env
	cmd.WaitDelay = 30 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	o, err := cmd.Output()
	if errors.Is(err, exec.ErrWaitDelay) {
		w.t.Logf("wine %s: ended, but its output stayed open %v longer (a process it started)", strings.Join(args, " "), cmd.WaitDelay)
		err = nil
	}
	if err != nil {
		return string(o), fmt.Errorf("wine %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(o), nil
}

// settle waits until every process of the prefix has ended: an NSIS
// uninstaller returns at once and goes on as a copy of itself, and
// processes a command started end after it.
func (w *wine) settle() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.server, "-w")
	cmd.Env = w.env
	if err := cmd.Run(); err != nil {
		w.t.Fatalf("Wine's processes did not end (wineserver -w): %v", err)
	}
}

// unix is the host path of a C:\ path in the prefix.
func (w *wine) unix(winPath string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(winPath, `C:\`), `c:\`)
	return filepath.Join(w.prefix, "drive_c", filepath.FromSlash(strings.ReplaceAll(rest, `\`, "/")))
}

// regValues is what `reg query KEY` prints: value name → data ("" for a
// key that does not exist).
func (w *wine) regValues(key string) map[string]string {
	o, err := w.run("reg", "query", key)
	vals := map[string]string{}
	if err != nil {
		return vals
	}
	for _, line := range strings.Split(o, "\n") {
		line = strings.TrimRight(line, "\r")
		if !strings.HasPrefix(line, "    ") {
			continue
		}
		for _, typ := range []string{"    REG_SZ    ", "    REG_DWORD    ", "    REG_EXPAND_SZ    "} {
			if name, data, ok := strings.Cut(strings.TrimPrefix(line, "    "), typ); ok {
				vals[name] = data
			}
		}
	}
	return vals
}

const (
	runKey    = `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`
	uninstKey = `HKCU\Software\Microsoft\Windows\CurrentVersion\Uninstall\Hearth`
)

// runningDaemon is a hearth.exe run under Wine.
type runningDaemon struct {
	cmd  *exec.Cmd
	done chan error
	log  string // its standard output and error
}

func (w *wine) startDaemon(exe, dataDir string, flags ...string) *runningDaemon {
	w.t.Helper()
	return w.start(append([]string{exe, "run", "--data-dir", dataDir, "--federation", "off", "--lan-discovery", "off"}, flags...))
}

// splitCommandLine splits a Run-key command line of double-quoted (no
// quotes inside) or bare arguments, as the daemon and the installer write
// them.
func splitCommandLine(s string) []string {
	var args []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if rest, ok := strings.CutPrefix(s, `"`); ok {
			arg, after, _ := strings.Cut(rest, `"`)
			args, s = append(args, arg), after
			continue
		}
		arg, after, _ := strings.Cut(s, " ")
		args, s = append(args, arg), after
	}
	return args
}

func (w *wine) start(args []string) *runningDaemon {
	w.t.Helper()
	if len(args) == 0 {
		w.t.Fatal("no command to start")
	}
	cmd := exec.Command(w.loader, args...)
	cmd.Env = w.env
	// A file, not a pipe: the wineserver this process may start inherits
	// its output and outlives it, and Wait would wait for the pipe.
	log, err := os.CreateTemp(w.t.TempDir(), "daemon-*.log")
	if err != nil {
		w.t.Fatal(err)
	}
	defer log.Close()
	d := &runningDaemon{cmd: cmd, done: make(chan error, 1), log: log.Name()}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { d.done <- cmd.Wait() }()
	w.t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Kill()
			<-d.done
		}
	})
	return d
}

// wait checks that the daemon has ended, cleanly, within 30 s: it was
// asked to stop before, and stops in well under a second.
func (d *runningDaemon) wait(t *testing.T, after string) {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			out, _ := os.ReadFile(d.log)
			t.Errorf("the daemon ended with %v after %s; its output:\n%s", err, after, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon still runs after %s", after)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitVersions waits (up to 2 minutes: Wine's first start of a program
// can be slow) until the daemon answers /versions.
func waitVersions(t *testing.T, port int) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/_matrix/client/versions", port)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hearth.exe under Wine did not answer %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// containsText says whether b holds s in ASCII or UTF-16LE (a .lnk file
// holds its paths in either, its arguments in UTF-16).
func containsText(b []byte, s string) bool {
	if bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s))) {
		return true
	}
	var u []byte
	for _, r := range utf16.Encode([]rune(s)) {
		u = binary.LittleEndian.AppendUint16(u, r)
	}
	return bytes.Contains(b, u)
}

// installPrng puts a bcryptprimitives.dll into the prefix's system32.
// Go programs (since Go 1.24) take random bytes from its ProcessPrng,
// which every Windows 10 and later has, and which Debian 12's Wine 8.0
// lacks (Wine added it later): without it no Go program starts under this
// Wine. The DLL holds no code: its one export forwards to advapi32's
// SystemFunction036 (RtlGenRandom), which takes the same arguments and
// returns a BOOLEAN (the Go runtime reads only the low byte).
func installPrng(t *testing.T, w *wine) {
	t.Helper()
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/bcryptprimitives.dll"); err == nil {
		return // this Wine has its own
	}
	dll := forwarderDLL("bcryptprimitives.dll", "ProcessPrng", "advapi32.SystemFunction036")
	if err := os.WriteFile(w.unix(`C:\windows\system32\bcryptprimitives.dll`), dll, 0o644); err != nil {
		t.Fatal(err)
	}
}

// forwarderDLL is a minimal PE32+ DLL for x64 whose only export, name,
// forwards to target ("dll.Function"): headers, and one section holding
// the export directory and its strings. Layout: Microsoft's PE format
// specification ("Export Directory Table", "Export Address Table").
func forwarderDLL(dllName, name, target string) []byte {
	const fileAlign, sectAlign, rva = 0x200, 0x1000, 0x1000
	le := binary.LittleEndian

	ed := make([]byte, 52) // directory (40), one address, one name pointer, one ordinal
	nameOff := len(ed)
	ed = append(ed, dllName+"\x00"...)
	exportOff := len(ed)
	ed = append(ed, name+"\x00"...)
	targetOff := len(ed)
	ed = append(ed, target+"\x00"...)
	le.PutUint32(ed[12:], uint32(rva+nameOff))   // Name
	le.PutUint32(ed[16:], 1)                     // OrdinalBase
	le.PutUint32(ed[20:], 1)                     // AddressTableEntries
	le.PutUint32(ed[24:], 1)                     // NumberOfNamePointers
	le.PutUint32(ed[28:], rva+40)                // ExportAddressTableRVA
	le.PutUint32(ed[32:], rva+44)                // NamePointerRVA
	le.PutUint32(ed[36:], rva+48)                // OrdinalTableRVA
	le.PutUint32(ed[40:], uint32(rva+targetOff)) // inside the directory: a forwarder
	le.PutUint32(ed[44:], uint32(rva+exportOff))
	raw := (len(ed) + fileAlign - 1) / fileAlign * fileAlign

	h := make([]byte, fileAlign)
	copy(h, "MZ")
	le.PutUint32(h[0x3c:], 0x40) // e_lfanew
	copy(h[0x40:], "PE\x00\x00")
	coff := h[0x44:]
	le.PutUint16(coff[0:], 0x8664)  // AMD64
	le.PutUint16(coff[2:], 1)       // one section
	le.PutUint16(coff[16:], 240)    // SizeOfOptionalHeader
	le.PutUint16(coff[18:], 0x2022) // executable, large-address aware, DLL
	opt := h[0x58:]
	le.PutUint16(opt[0:], 0x20b) // PE32+
	le.PutUint32(opt[8:], uint32(raw))
	le.PutUint32(opt[20:], rva)
	le.PutUint64(opt[24:], 0x7ff6f0000000) // ImageBase
	le.PutUint32(opt[32:], sectAlign)
	le.PutUint32(opt[36:], fileAlign)
	le.PutUint16(opt[40:], 6)                                                     // OS version
	le.PutUint16(opt[48:], 6)                                                     // subsystem version
	le.PutUint32(opt[56:], rva+uint32((len(ed)+sectAlign-1)/sectAlign*sectAlign)) // SizeOfImage
	le.PutUint32(opt[60:], fileAlign)                                             // SizeOfHeaders
	le.PutUint16(opt[68:], 3)                                                     // console subsystem
	le.PutUint16(opt[70:], 0x0100)                                                // NX compatible
	le.PutUint64(opt[72:], 0x100000)
	le.PutUint64(opt[80:], 0x1000)
	le.PutUint64(opt[88:], 0x100000)
	le.PutUint64(opt[96:], 0x1000)
	le.PutUint32(opt[108:], 16)  // data directories
	le.PutUint32(opt[112:], rva) // the export directory
	le.PutUint32(opt[116:], uint32(len(ed)))
	sect := h[0x58+240:]
	copy(sect, ".edata")
	le.PutUint32(sect[8:], uint32(len(ed)))
	le.PutUint32(sect[12:], rva)
	le.PutUint32(sect[16:], uint32(raw))
	le.PutUint32(sect[20:], fileAlign)
	le.PutUint32(sect[36:], 0x40000040) // initialized data, readable
	return append(append(h, ed...), make([]byte, raw-len(ed))...)
}
