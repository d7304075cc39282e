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

	"github.com/tc-hib/winres"
	"github.com/tc-hib/winres/version"
)

func TestWindowsVersion(t *testing.T) {
	for v, want := range map[string][4]uint16{
		"0.4.0":                   {0, 4, 0, 0},
		"v1.2.3":                  {1, 2, 3, 0},
		"0.4.0-12-gabc1234":       {0, 4, 0, 12},
		"0.4.0-12-gabc1234-dirty": {0, 4, 0, 12},
		"1.2.0-rc1":               {1, 2, 0, 0},
		"1.2.3.4":                 {1, 2, 3, 4},
		"2.0":                     {2, 0, 0, 0},
		"70000.1.2":               {65535, 1, 2, 0},
		"804501b-dirty":           {},
		"8045012":                 {},
		"":                        {},
	} {
		if got := windowsVersion(v); got != want {
			t.Errorf("windowsVersion(%q) = %v, want %v", v, got, want)
		}
	}
}

// distTest skips unless `make test-dist` runs the test (it installs the
// tools first), and fails if a tool it needs is missing then: a dist test
// that silently did nothing would prove nothing.
func distTest(t *testing.T, tools ...string) map[string]string {
	t.Helper()
	if os.Getenv("HEARTH_TEST_DIST") == "" {
		t.Skip("installs the artifacts of make dist for real: run by make test-dist (HEARTH_TEST_DIST=1)")
	}
	paths := map[string]string{}
	for _, tool := range tools {
		p, err := lookTool(tool)
		if err != nil {
			t.Fatalf("make test-dist installs %s: %v", tool, err)
		}
		paths[tool] = p
	}
	return paths
}

// lookTool finds a tool on PATH or where Debian keeps Wine's 64-bit
// loader and server (which it does not put on PATH without wine32).
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/lib/wine", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found on PATH or in /usr/lib/wine", name)
	}
	return p, nil
}

// buildWindows builds hearth.exe for windows/amd64 only (the whole
// make dist builds six platforms) into out and packs its installer.
func buildWindows(t *testing.T, out string) (*Build, Artifact) {
	t.Helper()
	ctx := context.Background()
	b, err := newBuild(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	saved := Platforms
	Platforms = []Platform{{"windows", "amd64", true}}
	defer func() { Platforms = saved }()
	if err := buildBinaries(ctx, b); err != nil {
		t.Fatal(err)
	}
	arts, err := windowsInstallers(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 1 {
		t.Fatalf("windowsInstallers made %d artifacts, want 1: %v", len(arts), arts)
	}
	return b, arts[0]
}

// TestWindowsInstaller builds hearth.exe and its installer twice (the
// bytes must match), checks the exe's resources and the installer's
// contents, and then installs it for real under Wine: a silent install,
// hearth.exe version and run, the Start-menu shortcut and Run entries, an
// install over the running daemon, and a silent uninstall that stops
// Hearth and removes everything but the user's data.
func TestWindowsInstaller(t *testing.T) {
	tools := distTest(t, "makensis", "7z", "wine64", "wineserver64", "Xvfb")
	t0 := time.Now()
	b, inst := buildWindows(t, t.TempDir())
	t.Logf("built hearth.exe and its installer in %v", time.Since(t0).Round(time.Second))
	exe := b.Binaries["windows/amd64"]

	t.Run("reproducible", func(t *testing.T) {
		_, inst2 := buildWindows(t, t.TempDir())
		for _, pair := range [][2]string{{inst.Path, inst2.Path}, {exe, filepath.Join(filepath.Dir(inst2.Path), "bin", "windows-amd64", "hearth.exe")}} {
			a, _ := os.ReadFile(pair[0])
			c, _ := os.ReadFile(pair[1])
			if len(a) == 0 || !bytes.Equal(a, c) {
				t.Errorf("two builds of one commit differ: %s (%d bytes) and %s (%d bytes)", pair[0], len(a), pair[1], len(c))
			}
		}
	})

	t.Run("resources", func(t *testing.T) {
		f, err := os.Open(exe)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rs, err := winres.LoadFromEXE(f)
		if err != nil {
			t.Fatalf("hearth.exe has no resources: %v", err)
		}
		icon, err := rs.GetIcon(winres.ID(1))
		if err != nil {
			t.Fatalf("hearth.exe has no icon: %v", err)
		}
		var ico bytes.Buffer
		if err := icon.SaveICO(&ico); err != nil || ico.Len() < 1000 {
			t.Errorf("hearth.exe's icon: %d bytes, %v", ico.Len(), err)
		}
		vi, err := version.FromBytes(rs.Get(winres.RT_VERSION, winres.ID(1), version.LangDefault))
		if err != nil {
			t.Fatalf("hearth.exe has no version resource: %v", err)
		}
		if vi.FileVersion != windowsVersion(b.Version) || vi.ProductVersion != windowsVersion(b.Version) {
			t.Errorf("version resource numbers %v/%v, want %v", vi.FileVersion, vi.ProductVersion, windowsVersion(b.Version))
		}
		strs := vi.Table().GetMainTranslation()
		if strs[version.ProductVersion] != b.Version || strs[version.ProductName] != "Hearth" || strs[version.OriginalFilename] != "hearth.exe" {
			t.Errorf("version strings %v, want ProductVersion %q", strs, b.Version)
		}
		if rs.Get(winres.RT_MANIFEST, winres.ID(1), winres.LCIDDefault) == nil {
			t.Error("hearth.exe has no manifest")
		}
	})

	t.Run("contents", func(t *testing.T) {
		// 7-Zip reads NSIS installers: it lists what the installer holds.
		o, err := exec.Command(tools["7z"], "l", inst.Path).CombinedOutput()
		if err != nil {
			t.Fatalf("7z l: %v\n%s", err, o)
		}
		for _, want := range []string{"NSIS-3 Unicode 64-bit", " hearth.exe\n", " uninstall.exe\n"} {
			if !strings.Contains(string(o), want) {
				t.Errorf("7z l %s: no %q in\n%s", filepath.Base(inst.Path), want, o)
			}
		}
	})

	t.Run("wine", func(t *testing.T) { wineInstall(t, b, inst, tools) })
}

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
// its standard output.
func (w *wine) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.loader, args...)
	cmd.Env = w.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	o, err := cmd.Output()
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

func wineInstall(t *testing.T, b *Build, inst Artifact, tools map[string]string) {
	w := newWine(t, tools)
	t0 := time.Now()
	if _, err := w.run("wineboot", "-i"); err != nil {
		t.Fatalf("Wine cannot make a prefix here: %v", err)
	}
	w.settle()
	t.Logf("Wine's first start (a new prefix): %v", time.Since(t0).Round(100*time.Millisecond))
	installPrng(t, w)

	// The install, silent as a deployment tool would run it.
	start := time.Now()
	if _, err := w.run(inst.Path, "/S"); err != nil {
		t.Fatal(err)
	}
	w.settle()
	installTime := time.Since(start)
	profile, err := w.run("cmd", "/c", "echo %USERPROFILE%")
	if err != nil {
		t.Fatal(err)
	}
	profile = strings.TrimSpace(profile)
	dir := profile + `\AppData\Local\Programs\Hearth`
	exe := dir + `\hearth.exe`
	lnk := w.unix(profile + `\AppData\Roaming\Microsoft\Windows\Start Menu\Programs\Hearth.lnk`)
	dataDir := profile + `\AppData\Roaming\Hearth`
	for _, f := range []string{exe, dir + `\uninstall.exe`} {
		if _, err := os.Stat(w.unix(f)); err != nil {
			t.Fatalf("the installer did not write %s: %v", f, err)
		}
	}

	out, err := w.run(exe, "version")
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(out, "\n"); strings.TrimSpace(first) != "hearth "+b.Version {
		t.Errorf("hearth.exe version: %q, want first line %q", out, "hearth "+b.Version)
	}

	// The Start-menu entry runs the tray.
	l, err := os.ReadFile(lnk)
	if err != nil {
		t.Fatalf("no Start-menu shortcut: %v", err)
	}
	if !containsText(l, "hearth.exe") || !containsText(l, "tray") {
		t.Errorf("Start-menu shortcut %s does not run hearth.exe tray", lnk)
	}
	run := w.regValues(runKey)
	if !strings.HasPrefix(run["Hearth"], `"`+exe+`" "run" "--data-dir" "`+dataDir+`"`) {
		t.Errorf(`Run\Hearth = %q, want the daemon from %s with %s`, run["Hearth"], exe, dataDir)
	}
	if run["Hearth Tray"] != `"`+exe+`" tray --start-daemon` {
		t.Errorf(`Run\Hearth Tray = %q, want the tray`, run["Hearth Tray"])
	}
	un := w.regValues(uninstKey)
	for name, want := range map[string]string{
		"DisplayName": "Hearth", "DisplayVersion": b.Version, "Publisher": "Hearth",
		"DisplayIcon": exe + ",0", "UninstallString": `"` + dir + `\uninstall.exe"`,
		"QuietUninstallString": `"` + dir + `\uninstall.exe" /S`, "NoModify": "0x1", "NoRepair": "0x1",
	} {
		if un[name] != want {
			t.Errorf(`Uninstall\Hearth %s = %q, want %q`, name, un[name], want)
		}
	}
	if un["EstimatedSize"] == "" || un["EstimatedSize"] == "0x0" {
		t.Errorf(`Uninstall\Hearth EstimatedSize = %q`, un["EstimatedSize"])
	}

	// The daemon, on the user's own data dir (the one the Run entry and
	// the uninstaller use), on a free loopback port set in its hearth.conf
	// so that Hearth's own commands find it there.
	port := freePort(t)
	if err := os.MkdirAll(w.unix(dataDir), 0o700); err != nil {
		t.Fatal(err)
	}
	// Federation and LAN discovery off here too, for the daemon the Run
	// entry starts: test traffic stays on loopback.
	conf := fmt.Sprintf("client_listen = 127.0.0.1:%d\nturn = off\nfederation = off\nlan_discovery = off\n", port)
	if err := os.WriteFile(filepath.Join(w.unix(dataDir), "hearth.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// The time a person waits: the install, then the first start (keys,
	// the owner's account) until /versions answers; not the checks between.
	start = time.Now()
	daemon := w.startDaemon(exe, dataDir)
	waitVersions(t, port)
	firstStart := time.Since(start)
	t.Logf("install to first /versions under Wine: %v (silent install %v, first start %v; Wine's prefix already made)",
		(installTime + firstStart).Round(100*time.Millisecond), installTime.Round(100*time.Millisecond), firstStart.Round(100*time.Millisecond))

	// Installing over the running daemon (an upgrade) stops it, replaces
	// hearth.exe, and keeps its data.
	if _, err := w.run(inst.Path, "/S"); err != nil {
		t.Fatal(err)
	}
	w.settle() // returns only once the daemon has ended too
	daemon.wait(t, "the install over it")
	if _, err := os.Stat(filepath.Join(w.unix(dataDir), "hearth.db")); err != nil {
		t.Fatalf("the install over a running daemon lost its data: %v", err)
	}
	// The next login: the daemon as its Run entry starts it.
	daemon = w.start(splitCommandLine(w.regValues(runKey)["Hearth"]))
	waitVersions(t, port)

	// A Hearth the uninstaller cannot stop (one on another data dir: its
	// control API is elsewhere) keeps hearth.exe in use: the uninstall
	// stops with a message and removes nothing, login entries included.
	// Run in place (_?=) the uninstaller is synchronous and returns NSIS's
	// exit code, 2 for "aborted by the script".
	otherPort := freePort(t)
	other := w.startDaemon(exe, profile+`\other-hearth`, "--client-listen", fmt.Sprintf("127.0.0.1:%d", otherPort), "--turn", "off")
	waitVersions(t, otherPort)
	_, err = w.run(dir+`\uninstall.exe`, "/S", "_?="+dir)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("uninstall while a Hearth it cannot stop runs: %v, want exit code 2 (aborted)", err)
	}
	if _, err := os.Stat(w.unix(exe)); err != nil {
		t.Errorf("the aborted uninstall removed hearth.exe: %v", err)
	}
	if _, err := os.Stat(lnk); err != nil {
		t.Errorf("the aborted uninstall removed the shortcut: %v", err)
	}
	if run := w.regValues(runKey); run["Hearth"] == "" || run["Hearth Tray"] == "" {
		t.Errorf("the aborted uninstall left the Run entries %v, want both back", run)
	}
	if un := w.regValues(uninstKey); un["UninstallString"] == "" {
		t.Errorf("the aborted uninstall removed Uninstall\\Hearth")
	}
	// It did stop the daemon it could reach.
	daemon.wait(t, "the aborted uninstall")
	if _, err := w.run(exe, "service", "stop", "--data-dir", profile+`\other-hearth`, "--client-listen", fmt.Sprintf("127.0.0.1:%d", otherPort)); err != nil {
		t.Fatal(err)
	}
	other.wait(t, "hearth service stop")
	daemon = w.startDaemon(exe, dataDir)
	waitVersions(t, port)

	// The tray too, as the Start menu (or its Run entry) starts it. The
	// uninstall comes once Wine has mapped its hearth.exe, as it would for
	// a person (a tray started the same instant, on a loaded machine, could
	// still be loading when the uninstaller deletes the file, and then it
	// runs on with nothing left to close it).
	tray := w.start([]string{exe, "tray"})
	waitMapped(t, tray.cmd.Process.Pid, w.unix(exe))

	// The uninstall Apps & features runs silently: it stops Hearth, the
	// tray included, and removes all but the user's data.
	quiet := w.regValues(uninstKey)["QuietUninstallString"]
	prog, arg, _ := strings.Cut(strings.TrimPrefix(quiet, `"`), `" `)
	if _, err := w.run(prog, arg); err != nil {
		t.Fatal(err)
	}
	w.settle()
	daemon.wait(t, "the uninstall")
	tray.wait(t, "the uninstall")
	for _, f := range []string{exe, dir + `\uninstall.exe`, dir} {
		if _, err := os.Stat(w.unix(f)); err == nil {
			t.Errorf("the uninstall left %s", f)
		}
	}
	if _, err := os.Stat(lnk); err == nil {
		t.Errorf("the uninstall left the Start-menu shortcut")
	}
	run = w.regValues(runKey)
	for _, name := range []string{"Hearth", "Hearth Tray"} {
		if v, ok := run[name]; ok {
			t.Errorf(`the uninstall left Run\%s = %q`, name, v)
		}
	}
	if un := w.regValues(uninstKey); len(un) != 0 {
		t.Errorf(`the uninstall left Uninstall\Hearth: %v`, un)
	}
	for _, f := range []string{"hearth.db", "hearth.conf"} {
		if _, err := os.Stat(filepath.Join(w.unix(dataDir), f)); err != nil {
			t.Errorf("the uninstall removed the user's data: %v", err)
		}
	}
}

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

// waitMapped waits until the process has the file mapped (Wine loads an
// .exe by mapping it), which is when Windows would refuse to delete it.
func waitMapped(t *testing.T, pid int, hostPath string) {
	t.Helper()
	want := strings.ToLower(filepath.Base(filepath.Dir(hostPath)) + "/" + filepath.Base(hostPath))
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			t.Fatalf("the process ended before it loaded %s: %v", hostPath, err)
		}
		if strings.Contains(strings.ToLower(string(maps)), want) {
			return
		}
	}
	t.Fatalf("process %d did not load %s within a minute", pid, hostPath)
}
