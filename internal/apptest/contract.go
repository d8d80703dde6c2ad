package apptest

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// Operation is one client operation of shared/clients, with its own text
// so that it can be validated and sent on its own.
type Operation struct {
	File   string // relative to the clients folder, e.g. "admin/auth.graphql"
	Name   string
	Kind   ast.Operation
	Source string
}

// ClientsDir finds shared/clients: $ONEMEMBER_CLIENTS_DIR, or ../shared/clients
// next to the repository root.
func ClientsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("ONEMEMBER_CLIENTS_DIR"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			clients := filepath.Join(dir, "..", "shared", "clients")
			if _, err := os.Stat(clients); err != nil {
				t.Fatalf("client operations not found at %s (set ONEMEMBER_CLIENTS_DIR): %v", clients, err)
			}
			return clients
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found")
		}
		dir = parent
	}
}

// Operations loads every operation under the clients folder, by name.
func Operations(t testing.TB) map[string]Operation {
	t.Helper()
	root := ClientsDir(t)
	files, err := filepath.Glob(filepath.Join(root, "*", "*.graphql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no client operations under %s: %v", root, err)
	}
	ops := map[string]Operation{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		src := string(raw)
		runes := []rune(src) // token positions count runes
		doc, perr := parser.ParseQuery(&ast.Source{Name: rel, Input: src})
		if perr != nil {
			t.Fatalf("%s does not parse: %v", rel, perr)
		}
		starts := make([]int, len(doc.Operations))
		for i, op := range doc.Operations {
			starts[i] = op.Position.Start
		}
		sort.Ints(starts)
		for _, op := range doc.Operations {
			i := sort.SearchInts(starts, op.Position.Start)
			end := len(runes)
			if i+1 < len(starts) {
				end = starts[i+1]
			}
			if _, dup := ops[op.Name]; dup {
				t.Fatalf("operation %s is defined twice", op.Name)
			}
			ops[op.Name] = Operation{File: rel, Name: op.Name, Kind: op.Operation, Source: strings.TrimSpace(string(runes[op.Position.Start:end]))}
		}
	}
	return ops
}

// Op returns the named client operation's text, failing the test if the
// contract has no such operation.
func Op(t testing.TB, name string) string {
	t.Helper()
	op, ok := Operations(t)[name]
	if !ok {
		t.Fatalf("no client operation %q in shared/clients", name)
	}
	return op.Source
}
