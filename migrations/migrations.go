// Package migrations holds the versioned SQL migrations (golang-migrate
// format, generated from the ent schema by `make migration`, checksummed in
// atlas.sum). Files never change once they have landed.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
