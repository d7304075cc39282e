package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/hearth-chat/hearth/packaging"
	"github.com/hearth-chat/hearth/packaging/icons"
)

// linuxFile is one file a Linux package installs: its path on the
// installed system, where its bytes come from, and its mode.
type linuxFile struct {
	Dst  string
	Src  string
	Mode os.FileMode
}

// linuxPackages packs, for each Linux platform, a .deb and an .rpm (with
// nfpm, as a library) and a .tar.gz. Every timestamp is the commit's
// (b.Date), every owner root, every mode fixed, so two builds of one
// commit are byte-identical.
func linuxPackages(ctx context.Context, b *Build) ([]Artifact, error) {
	// The files made at build time (the rendered unit, the icons) go to a
	// scratch dir: nfpm reads contents from files, and no path of the
	// building machine ends up in a package.
	stage, err := os.MkdirTemp("", "hearth-dist-linux-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	// The user unit, rendered for the packaged binary. It names no
	// --data-dir, so each user's Hearth uses their own default data dir.
	unit, err := packaging.SystemdUnit(packaging.Service{Args: []string{"/usr/bin/hearth", "run"}})
	if err != nil {
		return nil, err
	}
	unitFile := filepath.Join(stage, "hearth.service")
	if err := os.WriteFile(unitFile, unit, 0o644); err != nil {
		return nil, err
	}
	version := packageVersion(b.Version)
	var arts []Artifact
	for _, p := range Platforms {
		if p.OS != "linux" {
			continue
		}
		bin := b.Binaries[p.OS+"/"+p.Arch]
		fs, err := linuxFiles(b, bin, unitFile, stage)
		if err != nil {
			return nil, err
		}
		for _, format := range []string{"deb", "rpm"} {
			a, err := nfpmPackage(b, format, p.Arch, version, fs)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", format, p.Arch, err)
			}
			arts = append(arts, a)
		}
		a, err := linuxTarball(b, p.Arch, fs)
		if err != nil {
			return nil, fmt.Errorf("tar.gz %s: %w", p.Arch, err)
		}
		arts = append(arts, a)
	}
	return arts, nil
}

// linuxFiles lists what a package installs (packaging/README.md).
func linuxFiles(b *Build, bin, unitFile, stage string) ([]linuxFile, error) {
	lin := filepath.Join(b.Root, "packaging", "linux")
	fs := []linuxFile{
		{"/usr/bin/hearth", bin, 0o755},
		{"/usr/share/applications/hearth.desktop", filepath.Join(lin, "hearth.desktop"), 0o644},
		{"/etc/xdg/autostart/hearth-tray.desktop", filepath.Join(lin, "hearth-tray.desktop"), 0o644},
		{"/usr/lib/systemd/user/hearth.service", unitFile, 0o644},
	}
	for _, s := range icons.Sizes {
		// The committed PNGs are embedded in the icons package; write
		// them out so nfpm and the tarball read them like any file.
		png, err := icons.PNG(s)
		if err != nil {
			return nil, err
		}
		src := filepath.Join(stage, fmt.Sprintf("hearth-%d.png", s))
		if err := os.WriteFile(src, png, 0o644); err != nil {
			return nil, err
		}
		fs = append(fs, linuxFile{fmt.Sprintf("/usr/share/icons/hicolor/%dx%d/apps/hearth.png", s, s), src, 0o644})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].Dst < fs[j].Dst })
	return fs, nil
}

func nfpmPackage(b *Build, format, arch, version string, fs []linuxFile) (Artifact, error) {
	lin := filepath.Join(b.Root, "packaging", "linux")
	info := &nfpm.Info{
		Name:          "hearth",
		Arch:          arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none", // packageVersion already made it sort right
		Release:       "1",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "Hearth <dev@hearth.invalid>",
		Description: "Personal Matrix homeserver\n" +
			"Hearth runs a Matrix homeserver for you on your own computer: one\n" +
			"binary, one data file, a tray icon that starts it at login.",
		Homepage: "https://github.com/hearth-chat/hearth",
		MTime:    b.Date,
	}
	info.RPM.BuildHost = "hearth-dist" // not the building machine's name
	info.RPM.Summary = "Personal Matrix homeserver"
	info.RPM.Group = "Applications/Internet"
	info.Scripts.PostInstall = filepath.Join(lin, "postinstall.sh")
	info.Scripts.PostRemove = filepath.Join(lin, "postremove.sh")
	for _, f := range fs {
		info.Contents = append(info.Contents, &files.Content{
			Source: f.Src, Destination: f.Dst, Type: files.TypeFile,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: f.Mode, MTime: b.Date},
		})
	}
	info = nfpm.WithDefaults(info)
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return Artifact{}, err
	}
	info.Target = filepath.Join(b.Out, pkgr.ConventionalFileName(info))
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return Artifact{}, err
	}
	out, err := os.Create(info.Target)
	if err != nil {
		return Artifact{}, err
	}
	if err := pkgr.Package(info, out); err != nil {
		out.Close()
		return Artifact{}, err
	}
	if err := out.Close(); err != nil {
		return Artifact{}, err
	}
	note := map[string]string{"deb": "Debian/Ubuntu package", "rpm": "Fedora/RHEL/openSUSE package"}[format]
	return Artifact{Path: info.Target, Note: fmt.Sprintf("%s (linux/%s)", note, arch)}, nil
}

// linuxTarball writes hearth-<version>-linux-<arch>.tar.gz: one top
// directory laid out like a prefix (bin/hearth, share/applications,
// share/icons), so `tar -xzf … --strip-components=1 -C ~/.local` installs
// it for one user; the systemd unit is left out because `hearth service
// install` writes one for wherever the binary is. The autostart entry is
// under etc/xdg/autostart for copying to ~/.config/autostart.
func linuxTarball(b *Build, arch string, fs []linuxFile) (Artifact, error) {
	top := fmt.Sprintf("hearth-%s-linux-%s", b.Version, arch)
	path := filepath.Join(b.Out, top+".tar.gz")
	out, err := os.Create(path)
	if err != nil {
		return Artifact{}, err
	}
	defer out.Close()
	zw, err := gzip.NewWriterLevel(out, gzip.BestCompression)
	if err != nil {
		return Artifact{}, err
	}
	tw := tar.NewWriter(zw)
	var entries []linuxFile
	for _, f := range fs {
		if strings.HasPrefix(f.Dst, "/usr/lib/systemd/") {
			continue
		}
		dst := strings.TrimPrefix(f.Dst, "/usr")
		entries = append(entries, linuxFile{top + dst, f.Src, f.Mode})
	}
	// Directories first, each once, in sorted order with the files.
	dirs := map[string]bool{}
	for _, e := range entries {
		for d := filepath.Dir(e.Dst); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		entries = append(entries, linuxFile{Dst: d + "/", Mode: 0o755})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Dst < entries[j].Dst })
	for _, e := range entries {
		if err := tarEntry(tw, e, b.Date); err != nil {
			return Artifact{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Artifact{}, err
	}
	if err := zw.Close(); err != nil {
		return Artifact{}, err
	}
	if err := out.Close(); err != nil {
		return Artifact{}, err
	}
	return Artifact{Path: path, Note: "tarball (linux/" + arch + ")"}, nil
}

func tarEntry(tw *tar.Writer, e linuxFile, mtime time.Time) error {
	h := &tar.Header{Name: e.Dst, Mode: int64(e.Mode), ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
	if strings.HasSuffix(e.Dst, "/") {
		h.Typeflag = tar.TypeDir
		return tw.WriteHeader(h)
	}
	f, err := os.Open(e.Src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	h.Typeflag, h.Size = tar.TypeReg, st.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

var (
	describeRE   = regexp.MustCompile(`^(\d+\.\d+\.\d+)(-(?:alpha|beta|pre|rc)\.?\d*)?(?:-(\d+)-g([0-9a-f]+))?(-dirty)?$`)
	nonVersionRE = regexp.MustCompile(`[^0-9A-Za-z.]`)
)

// packageVersion turns a release version (git describe, without the v)
// into a .deb/.rpm version that sorts the way the builds were made: a tag
// "0.4.0" stays; "0.4.0-12-gabc1234", 12 commits later, becomes
// "0.4.0+12.gabc1234" (after 0.4.0, where a "-" would make it a
// pre-release, and "-" is not allowed in an rpm version); a pre-release
// tag "1.0.0-rc1" becomes "1.0.0~rc1" (before 1.0.0); an untagged
// commit "abc1234" becomes "0.0.0+git.abc1234". A dirty tree adds
// "+dirty" / ".dirty".
func packageVersion(v string) string {
	m := describeRE.FindStringSubmatch(v)
	if m == nil {
		d := strings.HasSuffix(v, "-dirty")
		out := "0.0.0+git." + nonVersionRE.ReplaceAllString(strings.TrimSuffix(v, "-dirty"), ".")
		if d {
			out += ".dirty"
		}
		return out
	}
	out := m[1]
	if m[2] != "" {
		out += "~" + strings.TrimPrefix(m[2], "-")
	}
	if m[3] != "" {
		out += "+" + m[3] + ".g" + m[4]
	}
	if m[5] != "" {
		if m[3] != "" {
			out += ".dirty"
		} else {
			out += "+dirty"
		}
	}
	return out
}
