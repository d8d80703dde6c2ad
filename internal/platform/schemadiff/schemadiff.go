// Package schemadiff keeps migrations/ in step with the ent schema. Atlas'
// command-line tool cannot be installed here, so ent's Go API replays the
// migration folder onto a throw-away database and writes the difference
// to the ent schema as a new golang-migrate file (with atlas.sum).
package schemadiff

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	atlasmigrate "ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/sqltool"
	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql/schema"
	_ "github.com/lib/pq" // the "postgres" driver Atlas opens devURL with

	"github.com/onemember/onemember/ent/migrate"
)

// Generate writes a migration named name into dir for whatever the ent
// schema has that the migrations in dir do not, and returns the files it
// created (none when they agree). devURL must name an empty database.
func Generate(ctx context.Context, devURL, dir, name string) ([]string, error) {
	before, err := list(dir)
	if err != nil {
		return nil, err
	}
	d, err := sqltool.NewGolangMigrateDir(dir)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	err = migrate.NamedDiff(ctx, devURL, name,
		schema.WithDir(d),
		schema.WithMigrationMode(schema.ModeReplay),
		schema.WithDialect(dialect.Postgres),
		schema.WithFormatter(sqltool.GolangMigrateFormatter),
		schema.WithDropColumn(true),
		schema.WithDropIndex(true),
	)
	if err != nil {
		return nil, fmt.Errorf("diffing schema against %s: %w", dir, err)
	}
	after, err := list(dir)
	if err != nil {
		return nil, err
	}
	var created []string
	for _, f := range after {
		if !slices.Contains(before, f) {
			created = append(created, f)
		}
	}
	return created, nil
}

// Check reports an error when the ent schema and the migrations in dir
// disagree. It diffs into a scratch copy, so dir is never touched.
func Check(ctx context.Context, devURL, dir string) error {
	tmp, err := os.MkdirTemp("", "onemember-migrations-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	files, err := list(dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			return err
		}
	}
	created, err := Generate(ctx, devURL, tmp, "pending")
	if err != nil {
		return err
	}
	if len(created) > 0 {
		b, _ := os.ReadFile(filepath.Join(tmp, created[0]))
		return fmt.Errorf("migrations/ is behind the ent schema; run `make migration name=<change>`. Missing:\n%s", b)
	}
	return nil
}

// Rehash rewrites dir's atlas.sum. Hand-written migrations (SQL that ent
// does not model: partitioned tables, triggers) are added this way; the
// next Generate replays them like any other file.
func Rehash(dir string) error {
	d, err := sqltool.NewGolangMigrateDir(dir)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dir, err)
	}
	sum, err := d.Checksum()
	if err != nil {
		return err
	}
	return atlasmigrate.WriteSumFile(d, sum)
}

func list(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && (filepath.Ext(e.Name()) == ".sql" || e.Name() == "atlas.sum") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
