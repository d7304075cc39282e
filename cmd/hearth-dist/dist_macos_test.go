package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"debug/macho"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackmordaunt/icns/v3"
	"howett.net/plist"
)

// macOSBuild cross-builds the two darwin binaries as make dist does
// (buildBinaries, for the darwin platforms only) into a temporary dist.
func macOSBuild(t *testing.T) *Build {
	t.Helper()
	if os.Getenv("HEARTH_TEST_DIST") == "" {
		t.Skip("cross-builds and packs release artifacts: run by make test-dist (HEARTH_TEST_DIST=1)")
	}
	for _, tool := range []string{"xorriso", "7z"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: make test-dist installs it (Debian packages xorriso, p7zip-full)", tool)
		}
	}
	ctx := context.Background()
	b, err := newBuild(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all := Platforms
	Platforms = nil
	for _, p := range all {
		if p.OS == "darwin" {
			Platforms = append(Platforms, p)
		}
	}
	defer func() { Platforms = all }()
	if err := buildBinaries(ctx, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMacOSBundles checks Hearth.app in the zip and in the .dmg as far as
// Linux can (issue 13): Info.plist's keys through a plist parser, the
// executable bit, a universal binary whose slices are the darwin/amd64
// and darwin/arm64 builds (arm64 signed, as Apple silicon requires), the
// icon, the .dmg's ISO 9660 and HFS+ sides holding the same app, and two
// builds of one commit being byte-identical.
func TestMacOSBundles(t *testing.T) {
	b := macOSBuild(t)
	arts, err := macOSBundles(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 2 || !strings.HasSuffix(arts[0].Path, ".zip") || !strings.HasSuffix(arts[1].Path, ".dmg") {
		t.Fatalf("artifacts %v, want the zip and the .dmg", arts)
	}
	zipPath, dmgPath := arts[0].Path, arts[1].Path
	app := readZip(t, zipPath, b.Date)

	wantNames := []string{"Hearth.app/", "Hearth.app/Contents/", "Hearth.app/Contents/Info.plist",
		"Hearth.app/Contents/MacOS/", "Hearth.app/Contents/MacOS/hearth", "Hearth.app/Contents/PkgInfo",
		"Hearth.app/Contents/Resources/", "Hearth.app/Contents/Resources/hearth.icns"}
	var names []string
	for _, f := range app {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("zip holds %q, want %q (sorted)", names, wantNames)
	}
	files := map[string]bundleFile{}
	for _, f := range app {
		files[f.Name] = f
		if !f.Mode.IsDir() && !strings.HasSuffix(f.Name, "/hearth") && f.Mode.Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644", f.Name, f.Mode)
		}
	}
	exe := files["Hearth.app/Contents/MacOS/hearth"]
	if exe.Mode.Perm() != 0o755 {
		t.Errorf("the app's executable has mode %v in the zip, want 0755", exe.Mode)
	}
	if got := string(files["Hearth.app/Contents/PkgInfo"].Data); got != "APPL????" {
		t.Errorf("PkgInfo %q", got)
	}

	checkInfoPlist(t, b, files["Hearth.app/Contents/Info.plist"].Data)
	checkUniversal(t, b, exe.Data)
	checkIcon(t, files["Hearth.app/Contents/Resources/hearth.icns"].Data)
	checkDMG(t, dmgPath, files, b.Date)
	checkRockRidge(t, dmgPath)

	// A second build of the same commit and binaries: the same bytes.
	again := *b
	again.Out = t.TempDir()
	arts2, err := macOSBundles(context.Background(), &again)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range arts {
		one, _ := os.ReadFile(a.Path)
		two, _ := os.ReadFile(arts2[i].Path)
		if !bytes.Equal(one, two) {
			t.Errorf("%s differs between two builds of one commit", filepath.Base(a.Path))
		}
	}
}

// TestMacOSBundlesOneArch: make dist -platforms darwin/arm64 packs an
// arm64 app (a thin Mach-O), and a build with no darwin binary packs none.
func TestMacOSBundlesOneArch(t *testing.T) {
	b := macOSBuild(t)
	one := *b
	one.Binaries = map[string]string{"darwin/arm64": b.Binaries["darwin/arm64"]}
	arts, err := macOSBundles(context.Background(), &one)
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 2 || !strings.HasSuffix(arts[0].Path, "-macos-arm64.zip") {
		t.Fatalf("artifacts %v, want the arm64 zip and .dmg", arts)
	}
	for _, f := range readZip(t, arts[0].Path, b.Date) {
		if f.Name != "Hearth.app/Contents/MacOS/hearth" {
			continue
		}
		m, err := macho.NewFile(bytes.NewReader(f.Data))
		if err != nil || m.Cpu != macho.CpuArm64 {
			t.Errorf("the arm64 app's executable: %v %v, want a thin arm64 Mach-O", m, err)
		}
	}
	none := *b
	none.Binaries = map[string]string{}
	if arts, err := macOSBundles(context.Background(), &none); err != nil || arts != nil {
		t.Errorf("with no darwin binary: %v, %v; want nothing", arts, err)
	}
}

// TestBundleVersion: Apple wants CFBundleShortVersionString as integers;
// it is the tag's x.y.z, and 0.0.0 for an untagged commit, whose version
// is its hash even when that starts with digits.
func TestBundleVersion(t *testing.T) {
	for v, want := range map[string]string{
		"0.4.0": "0.4.0", "0.4.0-12-gabc1234": "0.4.0", "1.2": "1.2.0", "1.2.3-rc1": "1.2.3",
		"0.4.0-12-gabc1234-dirty": "0.4.0", "10.20.30+meta": "10.20.30",
		"3cc00f4": "0.0.0", "3cc00f4-dirty": "0.0.0", "1234567": "0.0.0", "1.2.3x": "0.0.0", "": "0.0.0",
	} {
		if got := bundleVersion(v); got != want {
			t.Errorf("bundleVersion(%q) = %q, want %q", v, got, want)
		}
	}
}

// readZip reads every entry of the zip, in its order.
func readZip(t *testing.T, path string, date time.Time) []bundleFile {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var out []bundleFile
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if !f.Modified.Equal(date) {
			t.Errorf("%s: time %v, want the commit's", f.Name, f.Modified)
		}
		out = append(out, bundleFile{Name: f.Name, Mode: f.Mode(), Data: data})
	}
	return out
}

func checkInfoPlist(t *testing.T, b *Build, data []byte) {
	t.Helper()
	var info map[string]any
	format, err := plist.Unmarshal(data, &info)
	if err != nil {
		t.Fatalf("Info.plist: %v\n%s", err, data)
	}
	if format != plist.XMLFormat {
		t.Errorf("Info.plist format %d, want XML", format)
	}
	want := map[string]any{
		"CFBundleIdentifier":         "org.hearth.Hearth",
		"CFBundleName":               "Hearth",
		"CFBundleDisplayName":        "Hearth",
		"CFBundleExecutable":         "hearth",
		"CFBundleIconFile":           "hearth.icns",
		"CFBundlePackageType":        "APPL",
		"CFBundleShortVersionString": bundleVersion(b.Version),
		"CFBundleVersion":            bundleVersion(b.Version),
		"HearthVersion":              b.Version,
		"HearthCommit":               b.Commit,
		"LSUIElement":                true,
		"NSHighResolutionCapable":    true,
	}
	for k, v := range want {
		if info[k] != v {
			t.Errorf("Info.plist %s = %#v, want %#v", k, info[k], v)
		}
	}
	// The Go release's minimum macOS (12 for Go 1.25 and later).
	if v, _ := info["LSMinimumSystemVersion"].(string); v == "" || v < "11" || strings.Count(v, ".") > 2 {
		t.Errorf("LSMinimumSystemVersion %q", v)
	}
}

// checkUniversal: a fat Mach-O whose slices are the thin darwin builds,
// byte for byte, for the right CPUs.
func checkUniversal(t *testing.T, b *Build, exe []byte) {
	t.Helper()
	ff, err := macho.NewFatFile(bytes.NewReader(exe))
	if err != nil {
		t.Fatalf("the app's executable is not a universal Mach-O: %v", err)
	}
	// The same bytes as LLVM's lipo makes of the two builds.
	lipo := llvmLipo(t)
	ref := filepath.Join(t.TempDir(), "hearth")
	if out, err := exec.Command(lipo, "-create", "-output", ref, b.Binaries["darwin/amd64"], b.Binaries["darwin/arm64"]).CombinedOutput(); err != nil {
		t.Fatalf("llvm-lipo: %v\n%s", err, out)
	}
	if want, _ := os.ReadFile(ref); !bytes.Equal(exe, want) {
		t.Errorf("the universal binary differs from llvm-lipo's (%d and %d bytes)", len(exe), len(want))
	}
	want := map[string]macho.Cpu{"darwin/amd64": macho.CpuAmd64, "darwin/arm64": macho.CpuArm64}
	if len(ff.Arches) != len(want) {
		t.Fatalf("%d slices, want %d", len(ff.Arches), len(want))
	}
	for platform, cpu := range want {
		i := slices.IndexFunc(ff.Arches, func(a macho.FatArch) bool { return a.Cpu == cpu })
		if i < 0 {
			t.Errorf("no %v slice", cpu)
			continue
		}
		a := ff.Arches[i]
		if a.Offset%(1<<a.Align) != 0 || a.Align < 12 {
			t.Errorf("%v slice at %d, align 2^%d: not page-aligned", cpu, a.Offset, a.Align)
		}
		thin, err := os.ReadFile(b.Binaries[platform])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(exe[a.Offset:a.Offset+a.Size], thin) {
			t.Errorf("the %v slice is not the %s build", cpu, platform)
		}
		if a.Type != macho.TypeExec {
			t.Errorf("%v slice is of type %v, want an executable", cpu, a.Type)
		}
		// Apple silicon runs no unsigned code: the Go linker signs ad hoc.
		const lcCodeSignature = 0x1d
		signed := slices.ContainsFunc(a.Loads, func(l macho.Load) bool {
			raw := l.Raw()
			return len(raw) >= 4 && binary.LittleEndian.Uint32(raw) == lcCodeSignature
		})
		if cpu == macho.CpuArm64 && !signed {
			t.Errorf("the arm64 slice has no code signature: it would be killed on start")
		}
		if !bytes.Contains(thin, []byte(b.Commit)) {
			t.Errorf("%s build does not carry the commit it was stamped with", platform)
		}
		// Item 4: built without cgo, 'hearth tray' explains itself.
		if !bytes.Contains(thin, []byte("has no menu-bar item")) {
			t.Errorf("%s build lacks the no-menu-bar message", platform)
		}
	}
}

// llvmLipo finds llvm-lipo (Debian's llvm package installs it versioned).
func llvmLipo(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("llvm-lipo"); err == nil {
		return p
	}
	if m, _ := filepath.Glob("/usr/lib/llvm-*/bin/llvm-lipo"); len(m) > 0 {
		return m[len(m)-1]
	}
	t.Fatal("llvm-lipo is missing: make test-dist installs it (Debian package llvm)")
	return ""
}

// checkIcon: a valid icns holding every size up to 1024 px.
func checkIcon(t *testing.T, data []byte) {
	t.Helper()
	desc, err := icns.Probe(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("hearth.icns: %v", err)
	}
	var ids []string
	for _, d := range desc {
		if d.ImageFormat != icns.ImageFormatPNG {
			t.Errorf("icns %s is not PNG", d.OsType)
		}
		ids = append(ids, d.OsType.ID)
	}
	slices.Sort(ids)
	if want := []string{"ic07", "ic08", "ic09", "ic10", "ic11", "ic12", "ic13", "ic14"}; !slices.Equal(ids, want) {
		t.Errorf("icns holds %q, want %q", ids, want)
	}
	imgs, err := icns.DecodeAll(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("hearth.icns: %v", err)
	}
	for i := range imgs {
		if s := imgs[i].Bounds().Size(); s.X != s.Y || s.X < 32 {
			t.Errorf("icns image %d is %v", i, s)
		}
	}
}

// checkDMG lists the .dmg with 7z: its ISO 9660 side and its HFS+ side
// (what macOS mounts) hold Hearth.app with the zip's files, the HFS+
// executable byte-identical and executable, and the Applications link.
func checkDMG(t *testing.T, dmg string, zipped map[string]bundleFile, date time.Time) {
	t.Helper()
	stamp := date.UTC().Format("2006-01-02 15:04:05")
	for _, side := range []struct{ typ, prefix string }{{"iso", ""}, {"hfs", "Hearth/"}} {
		entries := list7z(t, side.typ, dmg)
		got := map[string]map[string]string{}
		for _, e := range entries {
			got[strings.TrimPrefix(e["Path"], side.prefix)] = e
		}
		for _, e := range entries {
			if !strings.HasPrefix(e["Modified"], stamp) {
				t.Errorf("%s side: %s modified %s, want the commit's time %s", side.typ, e["Path"], e["Modified"], stamp)
			}
		}
		for name, f := range zipped {
			e, ok := got[strings.TrimSuffix(name, "/")]
			if !ok {
				t.Errorf("%s side of the .dmg lacks %s", side.typ, name)
				continue
			}
			if f.Mode.IsDir() != (e["Folder"] == "+") {
				t.Errorf("%s side: %s folder=%q", side.typ, name, e["Folder"])
			}
			if !f.Mode.IsDir() && e["Size"] != strconv.Itoa(len(f.Data)) {
				t.Errorf("%s side: %s is %s bytes, want %d", side.typ, name, e["Size"], len(f.Data))
			}
		}
		if side.typ == "hfs" {
			if l, ok := got["Applications"]; !ok || !strings.HasPrefix(l["Mode"], "l") {
				t.Errorf("the .dmg has no Applications link to drag the app onto")
			}
			e := got["Hearth.app/Contents/MacOS/hearth"]
			if a := e["Mode"]; a != "-rwxr-xr-x" {
				t.Errorf("HFS+ executable mode %q, want -rwxr-xr-x", a)
			}
			out, err := exec.Command("7z", "x", "-so", "-tHFS", dmg, side.prefix+"Hearth.app/Contents/MacOS/hearth").Output()
			if err != nil {
				t.Fatalf("7z x: %v", err)
			}
			if !bytes.Equal(out, zipped["Hearth.app/Contents/MacOS/hearth"].Data) {
				t.Errorf("the .dmg's executable differs from the zip's")
			}
		}
	}
}

// checkRockRidge: the ISO 9660 side's Rock Ridge records (what macOS's
// cd9660 reads if it mounts that side) keep the executable bit and the
// Applications link; 7z does not show them, xorriso does.
func checkRockRidge(t *testing.T, dmg string) {
	t.Helper()
	out, err := exec.Command("xorriso", "-indev", dmg, "-lsl", "/Hearth.app/Contents/MacOS/hearth", "/Applications").Output()
	if err != nil {
		t.Fatalf("xorriso -lsl: %v\n%s", err, out)
	}
	for _, want := range []string{"-rwxr-xr-x", "lrwxrwxrwx", "-> '/Applications'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Rock Ridge listing lacks %q:\n%s", want, out)
		}
	}
}

// list7z is `7z l -slt` of one side of the image: one map per entry.
func list7z(t *testing.T, typ, path string) []map[string]string {
	t.Helper()
	cmd := exec.Command("7z", "l", "-slt", "-t"+typ, path)
	cmd.Env = append(os.Environ(), "TZ=UTC") // times as the commit's, in UTC
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("7z l -t%s %s: %v\n%s", typ, path, err, out)
	}
	var entries []map[string]string
	var cur map[string]string
	inList := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "----------") {
			inList = true
			continue
		}
		if !inList {
			continue
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			continue
		}
		if k == "Path" {
			cur = map[string]string{}
			entries = append(entries, cur)
		}
		if cur != nil {
			cur[k] = v
		}
	}
	return entries
}
