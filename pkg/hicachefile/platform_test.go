//go:build linux

package hicachefile

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestOtherPlatformsCompile pins that the package and its tests compile for
// macOS and Windows, where New returns errors.ErrUnsupported: a file that
// uses the store or Linux calls needs a //go:build linux line.
func TestOtherPlatformsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips running go vet for other platforms")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH to vet other platforms with: %v", err)
	}
	for _, platform := range [][2]string{{"darwin", "arm64"}, {"windows", "amd64"}} {
		cmd := exec.Command(gobin, "vet", ".")
		cmd.Env = append(os.Environ(), "GOOS="+platform[0], "GOARCH="+platform[1], "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOOS=%s GOARCH=%s go vet: %v\n%s", platform[0], platform[1], err, out)
		}
	}
}

// TestOtherPlatformsDeclareEveryStoreMethod pins that store_other.go, the
// Store of every platform but Linux, has each exported method of the Linux
// Store with the same signature, so that a program using the package
// compiles everywhere.
func TestOtherPlatformsDeclareEveryStoreMethod(t *testing.T) {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	linux, other := map[string]string{}, map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		dst := linux
		if name == "store_other.go" {
			dst = other
		} else if !strings.HasSuffix(name, "_linux.go") && buildLine(f) != "//go:build linux" {
			continue // a file of every platform
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.IsExported() && isStoreMethod(fn) {
				dst[fn.Name.Name] = signature(fset, fn.Type)
			}
		}
	}
	if len(linux) < 10 {
		t.Fatalf("found %d exported Store methods in the Linux files, want at least 10", len(linux))
	}
	for _, name := range slices.Sorted(maps.Keys(linux)) {
		if got, ok := other[name]; !ok {
			t.Errorf("store_other.go lacks (*Store).%s%s", name, linux[name])
		} else if got != linux[name] {
			t.Errorf("store_other.go: (*Store).%s%s, want %s", name, got, linux[name])
		}
	}
	for name := range other {
		if _, ok := linux[name]; !ok {
			t.Errorf("store_other.go has (*Store).%s, which Linux lacks", name)
		}
	}
}

// buildLine returns f's //go:build line, or "".
func buildLine(f *ast.File) string {
	for _, g := range f.Comments {
		for _, c := range g.List {
			if c.Pos() < f.Package && strings.HasPrefix(c.Text, "//go:build ") {
				return c.Text
			}
		}
	}
	return ""
}

// isStoreMethod reports whether fn has a receiver of type *Store.
func isStoreMethod(fn *ast.FuncDecl) bool {
	if fn.Recv == nil || len(fn.Recv.List) != 1 {
		return false
	}
	star, ok := fn.Recv.List[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	id, ok := star.X.(*ast.Ident)
	return ok && id.Name == "Store"
}

// signature renders ft's parameter and result types, without names.
func signature(fset *token.FileSet, ft *ast.FuncType) string {
	list := func(fl *ast.FieldList) string {
		if fl == nil {
			return "()"
		}
		var types []string
		for _, f := range fl.List {
			var b bytes.Buffer
			_ = printer.Fprint(&b, fset, f.Type)
			for range max(1, len(f.Names)) {
				types = append(types, b.String())
			}
		}
		return "(" + strings.Join(types, ", ") + ")"
	}
	return list(ft.Params) + " " + list(ft.Results)
}
