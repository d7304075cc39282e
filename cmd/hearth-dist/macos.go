package main

import (
	"archive/zip"
	"bytes"
	"context"
	"debug/macho"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/jackmordaunt/icns/v3"

	"github.com/hearth-chat/hearth/packaging/icons"
)

// macOS ships one Hearth.app for Intel and Apple silicon (a universal
// binary) in a zip and in a .dmg. The binaries are cross-built without
// cgo, so they have no menu-bar item (fyne.io/systray needs Cocoa through
// cgo): opening the app starts the daemon as a LaunchAgent and opens the
// console (cmd/hearth/app.go); packaging/README.md ("macOS") has the
// build with the menu-bar item, signing and notarization on a Mac.

const (
	appName    = "Hearth.app"
	appExe     = "hearth" // Contents/MacOS/hearth, as a person types it
	appIcon    = "hearth.icns"
	appVolume  = "Hearth" // the .dmg's volume name, shown in Finder
	macOSArchs = "amd64 arm64"
)

// bundleFile is one entry of Hearth.app: a directory (Data nil, name
// ending in /), a file, or in the .dmg a symlink.
type bundleFile struct {
	Name string // slash-separated, relative to the archive root
	Mode os.FileMode
	Data []byte
	Link string // symlink target
}

// macOSBundles packs Hearth.app into a zip and a .dmg: universal when
// both darwin binaries were built, else for the one that was (make dist
// -platforms), nothing when none was.
func macOSBundles(ctx context.Context, b *Build) ([]Artifact, error) {
	var archs, thin []string
	for _, arch := range strings.Fields(macOSArchs) {
		if p, ok := b.Binaries["darwin/"+arch]; ok {
			archs, thin = append(archs, arch), append(thin, p)
		}
	}
	if len(thin) == 0 {
		return nil, nil
	}
	kind := archs[0]
	if len(thin) > 1 {
		kind = "universal"
	}
	app, err := appBundle(b, thin)
	if err != nil {
		return nil, fmt.Errorf("macOS: %w", err)
	}
	base := filepath.Join(b.Out, "Hearth-"+b.Version+"-macos-"+kind)
	if err := writeZip(base+".zip", app, b); err != nil {
		return nil, fmt.Errorf("macOS zip: %w", err)
	}
	// The disk image adds the usual shortcut to drag the app onto.
	dmg := append(append([]bundleFile(nil), app...), bundleFile{Name: "Applications", Mode: os.ModeSymlink | 0o755, Link: "/Applications"})
	if err := writeDMG(ctx, base+".dmg", dmg, b); err != nil {
		return nil, fmt.Errorf("macOS dmg: %w", err)
	}
	return []Artifact{
		{Path: base + ".zip", Note: "macOS Hearth.app, " + kind + " (zip)"},
		{Path: base + ".dmg", Note: "macOS Hearth.app, " + kind + " (disk image)"},
	}, nil
}

// appBundle is Hearth.app's files, sorted by name, around the thin
// binaries joined into one.
func appBundle(b *Build, thin []string) ([]bundleFile, error) {
	exe, err := os.ReadFile(thin[0])
	if err != nil {
		return nil, err
	}
	if len(thin) > 1 {
		if exe, err = universal(thin); err != nil {
			return nil, err
		}
	}
	minOS, err := minimumMacOS(exe)
	if err != nil {
		return nil, err
	}
	plist, err := infoPlist(b, minOS)
	if err != nil {
		return nil, err
	}
	icon, err := appIconSet()
	if err != nil {
		return nil, err
	}
	c := appName + "/Contents/"
	files := []bundleFile{
		{Name: appName + "/", Mode: os.ModeDir | 0o755},
		{Name: c, Mode: os.ModeDir | 0o755},
		{Name: c + "Info.plist", Mode: 0o644, Data: plist},
		{Name: c + "PkgInfo", Mode: 0o644, Data: []byte("APPL????")},
		{Name: c + "MacOS/", Mode: os.ModeDir | 0o755},
		{Name: c + "MacOS/" + appExe, Mode: 0o755, Data: exe},
		{Name: c + "Resources/", Mode: os.ModeDir | 0o755},
		{Name: c + "Resources/" + appIcon, Mode: 0o644, Data: icon},
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// infoPlist fills packaging/macos/Info.plist. Apple wants the bundle
// versions as up to three integers, so they are the x.y.z that b.Version
// (git describe) starts with, 0.0.0 before the first tag; the whole
// version and the commit are kept in HearthVersion and HearthCommit.
func infoPlist(b *Build, minOS string) ([]byte, error) {
	t, err := template.New("Info.plist").ParseFiles(filepath.Join(b.Root, "packaging", "macos", "Info.plist"))
	if err != nil {
		return nil, err
	}
	esc := func(s string) string {
		var w strings.Builder
		xml.EscapeText(&w, []byte(s))
		return w.String()
	}
	var out bytes.Buffer
	err = t.Execute(&out, map[string]string{
		"Executable": esc(appExe), "Icon": esc(appIcon),
		"ShortVersion": bundleVersion(b.Version), "Version": esc(b.Version), "Commit": esc(b.Commit),
		"MinimumSystemVersion": minOS,
	})
	return out.Bytes(), err
}

// leadingVersion is a tag's x.y or x.y.z, then the end or git describe's
// "-N-gHASH" (or a pre-release's "-rc1"); an untagged commit's version is
// its abbreviated hash, which may start with digits ("3cc00f4").
var leadingVersion = regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?(?:$|[-+])`)

// bundleVersion is CFBundleShortVersionString: "1.2.3" of "1.2.3-4-gabc".
func bundleVersion(v string) string {
	m := leadingVersion.FindStringSubmatch(v)
	if m == nil {
		return "0.0.0"
	}
	if m[3] == "" {
		m[3] = "0"
	}
	return m[1] + "." + m[2] + "." + m[3]
}

// appIconSet is hearth.icns from the committed icon PNGs (packaging/icons),
// one entry per size Finder and the Dock ask for; 1024 px, which is not
// committed, is rendered.
func appIconSet() ([]byte, error) {
	// The retina types (ic11–ic14) are the 2x of 16, 32, 128 and 256 pt.
	types := []icns.OsType{
		{ID: "ic10", Size: 1024}, {ID: "ic14", Size: 512}, {ID: "ic09", Size: 512},
		{ID: "ic13", Size: 256}, {ID: "ic08", Size: 256}, {ID: "ic07", Size: 128},
		{ID: "ic12", Size: 64}, {ID: "ic11", Size: 32},
	}
	set := &icns.IconSet{}
	for _, t := range types {
		var data []byte
		var err error
		if t.Size == 1024 {
			data, err = icons.Encode(int(t.Size))
		} else {
			data, err = icons.PNG(int(t.Size))
		}
		if err != nil {
			return nil, fmt.Errorf("icon %d px: %w", t.Size, err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("icon %d px: %w", t.Size, err)
		}
		set.Icons = append(set.Icons, &icns.Icon{Type: t, Image: img})
	}
	var out bytes.Buffer
	if _, err := set.WriteTo(&out); err != nil {
		return nil, fmt.Errorf("icns: %w", err)
	}
	return out.Bytes(), nil
}

// universal joins thin Mach-O binaries into one universal ("fat") binary,
// as lipo -create does (<mach-o/fat.h>): a big-endian header, one
// fat_arch record per slice (CPU type and subtype, offset, size, and the
// alignment as a power of two), then each slice unchanged at an offset so
// aligned. The alignment is lipo's, the CPU's page size (4 KiB on Intel,
// 16 KiB on Apple silicon), and slices go in order of it. Each slice keeps its own code signature (the Go linker signs
// arm64 ad hoc). The test checks the bytes against llvm-lipo's.
func universal(thin []string) ([]byte, error) {
	type slice struct {
		cpu, sub, align uint32
		data            []byte
	}
	var slices []slice
	for _, p := range thin {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		f, err := macho.NewFile(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		slices = append(slices, slice{uint32(f.Cpu), f.SubCpu, pageAlign(f.Cpu), data})
	}
	sort.SliceStable(slices, func(i, j int) bool { return slices[i].align < slices[j].align })
	var out bytes.Buffer
	binary.Write(&out, binary.BigEndian, [2]uint32{macho.MagicFat, uint32(len(slices))})
	offset := uint32(8 + 20*len(slices))
	offsets := make([]uint32, len(slices))
	for i, s := range slices {
		a := uint32(1)<<s.align - 1
		offset = (offset + a) &^ a
		offsets[i] = offset
		binary.Write(&out, binary.BigEndian, [5]uint32{s.cpu, s.sub, offset, uint32(len(s.data)), s.align})
		offset += uint32(len(s.data))
	}
	for i, s := range slices {
		out.Write(make([]byte, int(offsets[i])-out.Len()))
		out.Write(s.data)
	}
	return out.Bytes(), nil
}

// pageAlign is a slice's alignment as a power of two: the CPU's page
// size, as llvm-lipo and Apple's lipo choose for executables.
func pageAlign(cpu macho.Cpu) uint32 {
	if cpu == macho.CpuArm64 || cpu == macho.CpuArm {
		return 14 // 16 KiB
	}
	return 12 // 4 KiB
}

// minimumMacOS is the newest minimum macOS version of the binary's slices
// (LC_BUILD_VERSION's minos, which the Go linker sets for its Go release),
// for LSMinimumSystemVersion: Finder then says the Mac is too old rather
// than the app failing to start.
func minimumMacOS(exe []byte) (string, error) {
	var files []*macho.File
	if ff, err := macho.NewFatFile(bytes.NewReader(exe)); err == nil {
		for _, a := range ff.Arches {
			files = append(files, a.File)
		}
	} else if f, err := macho.NewFile(bytes.NewReader(exe)); err == nil {
		files = append(files, f)
	} else {
		return "", err
	}
	var newest uint32
	for _, f := range files {
		v, err := buildMinOS(f)
		if err != nil {
			return "", fmt.Errorf("%s: %w", f.Cpu, err)
		}
		newest = max(newest, v)
	}
	return formatMacOSVersion(newest), nil
}

// buildMinOS reads the minimum OS of LC_BUILD_VERSION (struct
// build_version_command: cmd, cmdsize, platform, minos, sdk, ntools).
func buildMinOS(f *macho.File) (uint32, error) {
	const lcBuildVersion, platformMacOS = 0x32, 1
	for _, l := range f.Loads {
		raw := l.Raw()
		if len(raw) >= 16 && f.ByteOrder.Uint32(raw) == lcBuildVersion {
			if p := f.ByteOrder.Uint32(raw[8:]); p != platformMacOS {
				return 0, fmt.Errorf("built for platform %d, not macOS", p)
			}
			return f.ByteOrder.Uint32(raw[12:]), nil
		}
	}
	return 0, fmt.Errorf("no LC_BUILD_VERSION")
}

// formatMacOSVersion writes xxxx.yy.zz nibbles as 12.0 or 10.15.7.
func formatMacOSVersion(v uint32) string {
	s := strconv.Itoa(int(v>>16)) + "." + strconv.Itoa(int(v>>8&0xff))
	if v&0xff != 0 {
		s += "." + strconv.Itoa(int(v&0xff))
	}
	return s
}

// writeZip writes files to path reproducibly: in name order, every time
// the commit's, Unix modes in the external attributes (Archive Utility
// and unzip restore the executable bit from them).
func writeZip(path string, files []bundleFile, b *Build) error {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.Name, Modified: b.Date, Method: zip.Deflate}
		if f.Mode.IsDir() {
			h.Method = zip.Store
		}
		h.SetMode(f.Mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		if _, err := w.Write(f.Data); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// writeDMG makes the disk image with xorriso (Debian's xorriso package):
// an ISO 9660 image with Rock Ridge (modes, symlinks) and Joliet, plus an
// HFS+ file system over the same file data, marked by an Apple Partition
// Map, as hdiutil makehybrid makes. macOS mounts the HFS+ side; Finder
// opens a raw image by its .dmg name. genisoimage was not used: its
// hybrid is HFS, which macOS dropped in 10.15, and its Rock Ridge records
// hold each file's ctime, the build's clock. xorriso takes every time
// from SOURCE_DATE_EPOCH and --set_all_file_dates, so two builds are
// byte-identical.
func writeDMG(ctx context.Context, path string, files []bundleFile, b *Build) error {
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		return fmt.Errorf("the .dmg is made with xorriso: apt-get install xorriso (%w)", err)
	}
	stage, err := os.MkdirTemp(b.Out, ".dmg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	for _, f := range files {
		p := filepath.Join(stage, filepath.FromSlash(f.Name))
		switch {
		case f.Mode.IsDir():
			err = os.MkdirAll(p, 0o755)
		case f.Mode&os.ModeSymlink != 0:
			err = os.Symlink(f.Link, p)
		default:
			err = os.WriteFile(p, f.Data, 0o644)
		}
		if err == nil && f.Mode&os.ModeSymlink == 0 {
			err = os.Chmod(p, f.Mode.Perm()) // whatever the umask
		}
		if err != nil {
			return err
		}
	}
	os.Remove(path)
	cmd := exec.CommandContext(ctx, xorriso, "-as", "mkisofs",
		"-V", appVolume, "-R", "-J", "-uid", "0", "-gid", "0",
		// The APM layout grub-mkrescue uses for images Macs boot.
		"-hfsplus", "-apm-block-size", "2048",
		// Every file's times the commit's (the stage's are the build's).
		"--set_all_file_dates", b.Date.UTC().Format("20060102150405")+"00",
		"-no-pad", "-quiet", "-o", path, stage)
	cmd.Env = append(os.Environ(), "TZ=UTC", "SOURCE_DATE_EPOCH="+strconv.FormatInt(b.Date.Unix(), 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xorriso: %w: %s", err, stderr.Bytes())
	}
	return nil
}
