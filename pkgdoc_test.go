// Package hearth holds the repository's own rules as tests: every package
// says what it is for, imports only what docs/architecture.md lets it, and
// leaves writing a Matrix error to the handlers' wrappers.
package hearth

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// module is this repository's module path.
const module = "github.com/hearth-chat/hearth"

// listed is what `go list` says about one package of the module.
type listed struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
}

// goList lists every package of the module (all build tags the Makefile
// uses, so no file is left out), as the go command sees them.
func goList(t *testing.T) []listed {
	t.Helper()
	out, err := exec.Command("go", "list", "-tags", "goolm,dist", "-json=ImportPath,Name,Doc,Imports", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listed
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		p.ImportPath = rel(p.ImportPath)
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; run from the repository root", len(pkgs))
	}
	return pkgs
}

// rel is an import path relative to the module ("" for the root).
func rel(path string) string {
	return strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
}

// TestPackageDocs: every package has a doc comment that starts the way
// godoc expects ("Package name …", "Command name …" for a main package),
// so `go doc` and a reader opening the folder learn what it owns.
func TestPackageDocs(t *testing.T) {
	for _, p := range goList(t) {
		if p.ImportPath == "" {
			continue // this package: tests only, its comment above
		}
		want := "Package " + p.Name + " "
		if p.Name == "main" {
			want = "Command "
		}
		switch {
		case p.Doc == "":
			t.Errorf("%s has no package doc comment (add a doc.go, or the comment above `package` in its main file)", p.ImportPath)
		case !strings.HasPrefix(p.Doc, want):
			t.Errorf("%s: its doc comment starts %q, want %q", p.ImportPath, p.Doc, want+"…")
		}
	}
}
