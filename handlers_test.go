package hearth

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// writesError lists the functions in the HTTP packages that may call
// matrixerr.Write themselves, with why. Every handler returns its error
// instead (matrixerr.HandlerFunc, behind localapi/matrix's authed and
// public and federation's handle, writes it), so a Matrix error is
// written in one place (issue 17).
var writesError = map[string]string{
	"localapi/matrix/server.go ServeHTTP": "the body limit is checked before routing, outside any handler",
}

// TestHandlersReturnErrors: no handler in localapi/ or federation/ writes
// a Matrix error itself (matrixerr.Write) outside writesError, and no
// package there has a JSON writer of its own (writeJSON): they use
// matrixerr.WriteJSON.
func TestHandlersReturnErrors(t *testing.T) {
	fset := token.NewFileSet()
	for _, root := range []string{"localapi", "federation"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			checkHandlerFile(t, fset, filepath.ToSlash(path), f)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func checkHandlerFile(t *testing.T, fset *token.FileSet, path string, f *ast.File) {
	name := matrixerrName(f)
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		if fd.Name.Name == "writeJSON" {
			t.Errorf("%s: a writeJSON of its own: use matrixerr.WriteJSON", fset.Position(fd.Pos()))
		}
		if name == "" || writesError[path+" "+fd.Name.Name] != "" {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Write" {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == name {
				t.Errorf("%s: matrixerr.Write in %s: return the error and let the handler's wrapper write it", fset.Position(call.Pos()), fd.Name.Name)
			}
			return true
		})
	}
}

// matrixerrName is the name f imports internal/matrixerr under, or "".
func matrixerrName(f *ast.File) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == module+"/internal/matrixerr" {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return "matrixerr"
		}
	}
	return ""
}
