//go:build dist

// The dist tests (`make test-dist`, which `make test` calls) build the
// release artifacts and install them for real. They carry the dist build
// tag so that `go test ./...` does not run them twice, and they need root
// (dpkg, chroot, mounts). Each system's tests live in their own file
// (linux_test.go, windows_test.go, macos_test.go) and share the builds
// made here.
package main

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// distDir holds every build of this run; TestMain removes it.
var distDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "hearth-test-dist-")
	if err != nil {
		panic(err)
	}
	distDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

type distResult struct {
	b    *Build
	arts []Artifact
	err  error
}

var distBuilds = struct {
	sync.Mutex
	m map[string]*distResult
}{m: map[string]*distResult{}}

// distBuild runs make dist's build at version for these platforms (all
// when none are named) into its own directory, once per name and test
// run: later calls with the same name get the same build. Two names with
// one version are two independent builds of one commit (the
// reproducibility check compares them).
func distBuild(t *testing.T, name, version string, platforms ...string) (*Build, []Artifact) {
	t.Helper()
	distBuilds.Lock()
	defer distBuilds.Unlock()
	r := distBuilds.m[name]
	if r == nil {
		all := Platforms
		if len(platforms) > 0 {
			if err := selectPlatforms(strings.Join(platforms, ",")); err != nil {
				t.Fatal(err)
			}
		}
		r = &distResult{}
		r.b, r.arts, r.err = build(context.Background(), filepath.Join(distDir, name), version)
		if r.err == nil {
			r.err = printTable(r.b, r.arts)
		}
		Platforms = all
		distBuilds.m[name] = r
	}
	if r.err != nil {
		t.Fatalf("make dist (%s, %s): %v", name, version, r.err)
	}
	return r.b, r.arts
}

// artifact is the one artifact whose file name ends with suffix.
func artifact(t *testing.T, arts []Artifact, suffix string) string {
	t.Helper()
	var found []string
	for _, a := range arts {
		if strings.HasSuffix(a.Path, suffix) {
			found = append(found, a.Path)
		}
	}
	sort.Strings(found)
	if len(found) != 1 {
		t.Fatalf("artifacts ending in %q: %v", suffix, found)
	}
	return found[0]
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the dist tests install packages and mount file systems: run them as root (make test-dist does, through sudo)")
	}
}
