// Command hearth-dist is `make dist`: it cross-builds the hearth binary for
// every release platform and packs the installers each system expects
// (packaging/README.md lists them), printing each artifact and its size.
//
// Builds are reproducible: -trimpath, no VCS stamping, an empty build ID,
// and every timestamp taken from the commit (SOURCE_DATE_EPOCH), so two
// builds of one commit give the same bytes where the format allows.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Build is one release: its version, the commit it is made from, that
// commit's time (the only clock any artifact may hold), and where the
// binaries and artifacts go.
type Build struct {
	Version string    // e.g. 0.4.0-12-gabc1234, from git describe
	Commit  string    // full commit hash
	Date    time.Time // the commit's time, UTC
	Root    string    // the repository root
	Out     string    // the output directory
	// Binaries maps "GOOS/GOARCH" to the path of the built hearth binary.
	Binaries map[string]string
}

// Artifact is one file a release ships.
type Artifact struct {
	Path string
	Note string // what it is, e.g. "Debian package (amd64)"
}

// Platform is a release platform and whether its binary has the tray.
type Platform struct {
	OS, Arch string
	// Tray is false where fyne.io/systray needs cgo and cannot be
	// cross-built from Linux (macOS): the binary is built without it.
	Tray bool
}

// Platforms are the release platforms (issue 13).
var Platforms = []Platform{
	{"linux", "amd64", true}, {"linux", "arm64", true},
	{"windows", "amd64", true}, {"windows", "arm64", true},
	{"darwin", "amd64", false}, {"darwin", "arm64", false},
}

func main() {
	out := flag.String("out", "dist", "output directory")
	version := flag.String("version", "", "release version (default: git describe --tags, without the v)")
	platforms := flag.String("platforms", "", "only these platforms, comma-separated os/arch (default: all)")
	flag.Parse()
	if *platforms != "" {
		if err := selectPlatforms(*platforms); err != nil {
			fmt.Fprintln(os.Stderr, "hearth-dist:", err)
			os.Exit(2)
		}
	}
	if err := run(context.Background(), *out, *version); err != nil {
		fmt.Fprintln(os.Stderr, "hearth-dist:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, version string) error {
	b, arts, err := build(ctx, out, version)
	if err != nil {
		return err
	}
	return printTable(b, arts)
}

// build makes the binaries and every artifact; version, if set, replaces
// git describe's.
func build(ctx context.Context, out, version string) (*Build, []Artifact, error) {
	b, err := newBuild(ctx, out)
	if err != nil {
		return nil, nil, err
	}
	if version != "" {
		b.Version = strings.TrimPrefix(version, "v")
	}
	if err := buildBinaries(ctx, b); err != nil {
		return nil, nil, err
	}
	var arts []Artifact
	for _, pack := range []func(context.Context, *Build) ([]Artifact, error){
		linuxPackages, windowsInstallers, macOSBundles,
	} {
		a, err := pack(ctx, b)
		if err != nil {
			return nil, nil, err
		}
		arts = append(arts, a...)
	}
	return b, arts, nil
}

// selectPlatforms keeps only the listed platforms (a quicker build for a
// test or one system's release); every packager packs only what was built.
func selectPlatforms(list string) error {
	var keep []Platform
	for _, name := range strings.Split(list, ",") {
		found := false
		for _, p := range Platforms {
			if p.OS+"/"+p.Arch == strings.TrimSpace(name) {
				keep, found = append(keep, p), true
			}
		}
		if !found {
			return fmt.Errorf("-platforms: no platform %q", name)
		}
	}
	Platforms = keep
	return nil
}

// newBuild reads the version, commit and commit time from git.
func newBuild(ctx context.Context, out string) (*Build, error) {
	root, err := git(ctx, "", "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, err
	}
	commit, err := git(ctx, root, "rev-parse", "HEAD")
	if err != nil {
		return nil, err
	}
	version, err := git(ctx, root, "describe", "--tags", "--always", "--dirty")
	if err != nil {
		return nil, err
	}
	epoch, err := git(ctx, root, "log", "-1", "--format=%ct")
	if err != nil {
		return nil, err
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("commit time %q: %w", epoch, err)
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	return &Build{Version: strings.TrimPrefix(version, "v"), Commit: commit, Date: time.Unix(sec, 0).UTC(),
		Root: root, Out: out, Binaries: map[string]string{}}, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	o, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(o)), nil
}

// buildBinaries cross-builds hearth for every platform, static
// (CGO_ENABLED=0), reproducibly.
func buildBinaries(ctx context.Context, b *Build) error {
	for _, p := range Platforms {
		name := "hearth"
		if p.OS == "windows" {
			name += ".exe"
		}
		dst := filepath.Join(b.Out, "bin", p.OS+"-"+p.Arch, name)
		ldflags := fmt.Sprintf("-s -w -buildid= -X github.com/hearth-chat/hearth/daemon.Version=%s -X github.com/hearth-chat/hearth/daemon.Commit=%s -X github.com/hearth-chat/hearth/daemon.BuildDate=%s",
			b.Version, b.Commit, b.Date.Format(time.RFC3339))
		// goolm: mautrix's pure-Go Olm for the call agent's E2EE devices
		// (CGO_ENABLED=0 could not link libolm anyway).
		args := []string{"build", "-tags", "goolm", "-trimpath", "-buildvcs=false", "-ldflags", ldflags}
		if p.OS == "windows" {
			// The tray runs without a console window on Windows.
			args[len(args)-1] += " -H windowsgui"
		}
		args = append(args, "-o", dst, "./cmd/hearth")
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = b.Root
		cmd.Env = append(os.Environ(), "GOOS="+p.OS, "GOARCH="+p.Arch, "CGO_ENABLED=0",
			"SOURCE_DATE_EPOCH="+strconv.FormatInt(b.Date.Unix(), 10))
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s/%s: %w", p.OS, p.Arch, err)
		}
		b.Binaries[p.OS+"/"+p.Arch] = dst
	}
	return nil
}

func printTable(b *Build, arts []Artifact) error {
	fmt.Printf("hearth %s (%s, %s)\n\n", b.Version, b.Commit[:12], b.Date.Format(time.RFC3339))
	fmt.Printf("%-48s %12s  %s\n", "artifact", "bytes", "what")
	for _, p := range Platforms {
		if err := row(b, b.Binaries[p.OS+"/"+p.Arch], "binary "+p.OS+"/"+p.Arch); err != nil {
			return err
		}
	}
	for _, a := range arts {
		if err := row(b, a.Path, a.Note); err != nil {
			return err
		}
	}
	return nil
}

func row(b *Build, path, note string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(b.Out, path)
	fmt.Printf("%-48s %12d  %s\n", rel, st.Size(), note)
	return nil
}
