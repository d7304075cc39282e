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

// writesError lists the functions in the HTTP packages that may write an
// error themselves (matrixerr.Write; the control API's writeError), with
// why. Every handler returns its error instead (matrixerr.HandlerFunc,
// behind localapi/matrix's authed and public and federation's handle,
// or the control API's handlerFunc, writes it), so an error is written
// in one place (issue 17).
var writesError = map[string]string{
	"localapi/matrix/server.go ServeHTTP":   "the body limit is checked before routing, outside any handler",
	"localapi/control/control.go ServeHTTP": "the origin and credential checks come before routing; handlerFunc's own ServeHTTP",
}

// TestHandlersReturnErrors: no handler in localapi/ or federation/ writes
// an error itself (matrixerr.Write, the control API's writeError) outside
// writesError, and no package there has a JSON writer of its own
// (writeJSON): they use matrixerr.WriteJSON.
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
		if writesError[path+" "+fd.Name.Name] != "" {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if writesErr(call, name) {
				t.Errorf("%s: an error written in %s: return it and let the handler's wrapper write it", fset.Position(call.Pos()), fd.Name.Name)
			}
			return true
		})
	}
}

// writesErr reports whether call is matrixerr.Write (matrixerr imported
// as name) or the control API's writeError.
func writesErr(call *ast.CallExpr, name string) bool {
	switch f := call.Fun.(type) {
	case *ast.SelectorExpr:
		id, ok := f.X.(*ast.Ident)
		return ok && name != "" && id.Name == name && f.Sel.Name == "Write"
	case *ast.Ident:
		return f.Name == "writeError"
	}
	return false
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
