package schemadiff

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/sqltool"

	"github.com/onemember/onemember/internal/platform/pgtest"
)

func TestCheckAgreesWithCommittedMigrations(t *testing.T) {
	if err := Check(context.Background(), pgtest.New(t, nil), "../../../migrations"); err != nil {
		t.Fatal(err)
	}
}

// Without the latest migration generated from the ent schema (and the
// hand-written ones after it, which may build on it) the folder lags the
// ent schema: Check must say so.
func TestCheckCatchesAMissingMigration(t *testing.T) {
	src := "../../../migrations"
	files, _ := filepath.Glob(filepath.Join(src, "*.up.sql"))
	last := -1
	for i, f := range files {
		// Atlas writes a comment before every change it plans.
		if b, _ := os.ReadFile(f); strings.Contains(string(b), `-- create "`) || strings.Contains(string(b), `-- modify "`) {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("no generated migrations found")
	}
	dir := t.TempDir()
	for _, f := range files[:last] {
		b, _ := os.ReadFile(f)
		_ = os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644)
	}
	d, err := sqltool.NewGolangMigrateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := d.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate.WriteSumFile(d, sum); err != nil {
		t.Fatal(err)
	}
	err = Check(context.Background(), pgtest.New(t, nil), dir)
	if err == nil || !strings.Contains(err.Error(), "behind the ent schema") {
		t.Fatalf("Check with a missing migration: %v", err)
	}
}
