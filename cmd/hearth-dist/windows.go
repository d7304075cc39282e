package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/tc-hib/winres"
	"github.com/tc-hib/winres/version"

	"github.com/hearth-chat/hearth/packaging/icons"
)

// windowsInstallers gives each Windows hearth.exe its icon and version
// resources, then packs it into a per-user NSIS installer
// (packaging/windows/hearth.nsi): hearth-<version>-windows-<arch>-setup.exe.
func windowsInstallers(ctx context.Context, b *Build) ([]Artifact, error) {
	var arts []Artifact
	for _, p := range Platforms {
		exe, ok := b.Binaries[p.OS+"/"+p.Arch]
		if p.OS != "windows" || !ok {
			continue
		}
		if err := stampResources(b, exe); err != nil {
			return nil, fmt.Errorf("resources of %s: %w", exe, err)
		}
		a, err := nsisInstaller(ctx, b, p.Arch, exe)
		if err != nil {
			return nil, err
		}
		arts = append(arts, a)
	}
	return arts, nil
}

// windowsVersion maps a git-describe version to the four numbers a
// Windows version resource holds: 0.4.0 → 0.4.0.0, 0.4.0-12-gabc1234 →
// 0.4.0.12 (commits since the tag), 1.2.0-rc1 → 1.2.0.0. A version with
// no tag (a bare commit hash, even one of digits only) is 0.0.0.0; each
// number is capped at 65535.
func windowsVersion(v string) [4]uint16 {
	var out [4]uint16
	m := regexp.MustCompile(`^v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-(\d+)-g[0-9a-f]+)?(?:$|[-+])`).FindStringSubmatch(v)
	if m == nil {
		return out
	}
	nums := m[1:5]
	if m[4] == "" && m[5] != "" {
		nums[3] = m[5]
	}
	for i, s := range nums {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			continue // an absent part
		}
		out[i] = uint16(min(n, 65535))
	}
	return out
}

func versionString(v [4]uint16) string {
	return fmt.Sprintf("%d.%d.%d.%d", v[0], v[1], v[2], v[3])
}

// windowsResources is what Explorer shows of hearth.exe: its icon, the
// Details tab (version resource), and a manifest that runs it as the
// invoking user with no elevation prompt, long-path aware.
func windowsResources(b *Build) (*winres.ResourceSet, error) {
	icon, err := winres.LoadICO(bytes.NewReader(icons.ICOFile()))
	if err != nil {
		return nil, fmt.Errorf("hearth.ico: %w", err)
	}
	rs := &winres.ResourceSet{}
	// The icon group with the lowest ID is the one Explorer shows.
	if err := rs.SetIcon(winres.ID(1), icon); err != nil {
		return nil, err
	}
	num := windowsVersion(b.Version)
	vi := version.Info{FileVersion: num, ProductVersion: num, Timestamp: b.Date}
	// A build that is not exactly a tag is a prerelease.
	vi.Flags.Prerelease = strings.Contains(b.Version, "-") || num == [4]uint16{}
	for _, kv := range [][2]string{
		{version.ProductName, "Hearth"},
		{version.FileDescription, "Hearth, your own Matrix homeserver"},
		{version.CompanyName, "Hearth"},
		{version.LegalCopyright, "The Hearth authors"},
		{version.InternalName, "hearth"},
		{version.OriginalFilename, "hearth.exe"},
		{version.FileVersion, b.Version},
		{version.ProductVersion, b.Version},
		{version.Comments, "commit " + b.Commit},
	} {
		if err := vi.Set(version.LangDefault, kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	rs.SetVersionInfo(vi)
	rs.SetManifest(winres.AppManifest{
		Compatibility:  winres.Win10AndAbove, // what Go itself needs
		ExecutionLevel: winres.AsInvoker,
		DPIAwareness:   winres.DPIPerMonitorV2,
		LongPathAware:  true,
	})
	return rs, nil
}

// stampResources writes the resources into the built hearth.exe, in
// place. Patching the linked binary (as go-winres's "patch" does) rather
// than linking a .syso keeps every generated file out of the source tree
// and needs no change to the build: the same bytes either way.
func stampResources(b *Build, exe string) error {
	rs, err := windowsResources(b)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(exe)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := rs.WriteToEXE(&out, bytes.NewReader(src)); err != nil {
		return err
	}
	tmp := exe + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, exe)
}

// nsisInstaller runs makensis on packaging/windows/hearth.nsi for one
// architecture.
func nsisInstaller(ctx context.Context, b *Build, arch, exe string) (Artifact, error) {
	makensis, err := exec.LookPath("makensis")
	if err != nil {
		return Artifact{}, fmt.Errorf("the Windows installer needs makensis (Debian: apt-get install nsis): %w", err)
	}
	stage := filepath.Join(b.Out, "stage", "windows-"+arch)
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return Artifact{}, err
	}
	ico := filepath.Join(stage, "hearth.ico")
	if err := os.WriteFile(ico, icons.ICOFile(), 0o644); err != nil {
		return Artifact{}, err
	}
	st, err := os.Stat(exe)
	if err != nil {
		return Artifact{}, err
	}
	absExe, err := filepath.Abs(exe)
	if err != nil {
		return Artifact{}, err
	}
	out := filepath.Join(b.Out, fmt.Sprintf("hearth-%s-windows-%s-setup.exe", b.Version, arch))
	// hearth.exe plus the uninstaller NSIS writes (about 100 KiB).
	sizeKB := st.Size()/1024 + 100
	args := []string{"-V2", "-INPUTCHARSET", "UTF8",
		"-DVERSION=" + b.Version,
		"-DVIVERSION=" + versionString(windowsVersion(b.Version)),
		"-DARCH=" + arch,
		"-DEXE=" + absExe,
		"-DICON=" + ico,
		"-DOUTFILE=" + out,
		"-DSIZEKB=" + strconv.FormatInt(sizeKB, 10),
		filepath.Join(b.Root, "packaging", "windows", "hearth.nsi"),
	}
	cmd := exec.CommandContext(ctx, makensis, args...)
	cmd.Dir = stage
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(b.Date.Unix(), 10))
	if o, err := cmd.CombinedOutput(); err != nil {
		return Artifact{}, fmt.Errorf("makensis (%s): %w\n%s", arch, err, o)
	}
	return Artifact{Path: out, Note: fmt.Sprintf("Windows installer, per user (windows/%s)", arch)}, nil
}
