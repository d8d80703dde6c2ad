package audience

import (
	"context"
	"fmt"
	"io"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/onemember/onemember/ent"
	entaudience "github.com/onemember/onemember/ent/audience"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience/listimport"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// ImportResult is what an import matched.
type ImportResult struct {
	Audience                    *ent.Audience
	Matched, Unmatched, Invalid int64
}

// Import saves a STATIC audience from a list of phones or member numbers,
// read as a stream (see listimport).
func (s *Service) Import(ctx context.Context, name string, key listimport.Key, priority int, r io.Reader) (*ImportResult, error) {
	if name == "" || len(name) > 100 {
		return nil, fault.Invalidf("input.name", "must be 1 to 100 characters")
	}
	bm := roaring.New()
	counts, err := listimport.Import(ctx, s.db, s.phone, key, r, func(id int) {
		if o, ok := Ordinal(id); ok {
			bm.Add(o)
		}
	})
	if err != nil {
		return nil, err
	}
	a, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Audience, error) {
		a, err := tx.Audience.Create().SetName(name).SetSource(entaudience.SourceIMPORT).
			SetPriority(priority).SetRefresh(enum.RefreshStatic).Save(ctx)
		if database.IsUniqueViolation(err) {
			return nil, nameTaken(name)
		}
		if err != nil {
			return nil, fmt.Errorf("saving audience: %w", err)
		}
		return s.store(ctx, tx, a.ID, bm)
	})
	if err != nil {
		return nil, err
	}
	return &ImportResult{Audience: a, Matched: counts.Matched, Unmatched: counts.Unmatched, Invalid: counts.Invalid}, nil
}
