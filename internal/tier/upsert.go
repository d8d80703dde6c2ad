package tier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/benefit"
	enttier "github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// ladderLockKey is the transaction-level advisory lock that serializes
// ladder edits (arbitrary, fixed). Row locks would not do: a new tier is a
// row that no concurrent edit could have locked, and two edits that are
// each consistent with the old ladder can together break it.
const ladderLockKey int64 = 0x6f6d5f74696572 // "om_tier"

// ErrConflict is a ladder edit that lost a race on a unique code or rank.
var ErrConflict = fault.New(fault.Conflict, "the tier ladder changed concurrently; retry")

// Upsert creates or changes the tier with in.Code and returns it with its
// benefits. The ladder must stay consistent after the change (see
// checkLadder): problems are BAD_USER_INPUT naming the input field, as are
// unknown benefit codes (field benefitCodes).
//
// Changing the ladder moves nobody by itself: a lower threshold promotes
// at the member's next qualifying event, a higher one applies at their next
// review.
func (s *Service) Upsert(ctx context.Context, in TierInput) (*ent.Tier, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	t, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Tier, error) {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, ladderLockKey); err != nil {
			return nil, fmt.Errorf("locking tier ladder: %w", err)
		}
		ladder, err := loadLadder(ctx, tx.Tier)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(ladder, func(t *ent.Tier) bool { return t.Code == in.Code })
		var existing *ent.Tier
		if i >= 0 {
			existing = ladder[i]
		}
		want := in.tier(existing)
		if i >= 0 {
			ladder[i] = want
		} else {
			ladder = append(ladder, want)
			i = len(ladder) - 1
		}
		ladderErr := checkLadder(ladder, i, plainField)
		ids, benefitErr := benefitIDs(ctx, tx.Client(), in.BenefitCodes, "benefitCodes")
		if err := errors.Join(ladderErr, benefitErr); err != nil {
			return nil, err
		}
		id, err := save(ctx, tx, existing, want, in.BenefitCodes != nil, ids)
		if err != nil {
			return nil, err
		}
		return tx.Tier.Query().Where(enttier.ID(id)).WithBenefits().Only(ctx)
	})
	s.display.Forget()
	if database.IsUniqueViolation(err) {
		return nil, ErrConflict
	}
	return t, err
}

// save writes want, replacing the benefits when setBenefits.
func save(ctx context.Context, tx *ent.Tx, existing, want *ent.Tier, setBenefits bool, benefits []int) (int, error) {
	if existing == nil {
		t, err := tx.Tier.Create().SetCode(want.Code).SetName(want.Name).SetRank(want.Rank).
			SetThreshold(want.Threshold).SetMonthlySpendRequired(want.MonthlySpendRequired).
			SetReferralsRequired(want.ReferralsRequired).SetRetentionMonths(want.RetentionMonths).
			SetPointsMultiplierPermille(want.PointsMultiplierPermille).AddBenefitIDs(benefits...).
			Save(ctx)
		if err != nil {
			return 0, fmt.Errorf("creating tier %s: %w", want.Code, err)
		}
		return t.ID, nil
	}
	u := tx.Tier.UpdateOneID(existing.ID).SetName(want.Name).SetRank(want.Rank).
		SetThreshold(want.Threshold).SetMonthlySpendRequired(want.MonthlySpendRequired).
		SetReferralsRequired(want.ReferralsRequired).SetRetentionMonths(want.RetentionMonths).
		SetPointsMultiplierPermille(want.PointsMultiplierPermille)
	if setBenefits {
		u.ClearBenefits().AddBenefitIDs(benefits...)
	}
	if err := u.Exec(ctx); err != nil {
		return 0, fmt.Errorf("updating tier %s: %w", want.Code, err)
	}
	return existing.ID, nil
}

// benefitIDs resolves benefit codes; unknown ones are an error on field.
func benefitIDs(ctx context.Context, db *ent.Client, codes []string, field string) ([]int, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	found, err := db.Benefit.Query().Where(benefit.CodeIn(codes...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("looking up benefits: %w", err)
	}
	byCode := make(map[string]int, len(found))
	for _, b := range found {
		byCode[b.Code] = b.ID
	}
	var ids []int
	var unknown []string
	for _, c := range codes {
		if id, ok := byCode[c]; ok {
			ids = append(ids, id)
		} else {
			unknown = append(unknown, c)
		}
	}
	if len(unknown) > 0 {
		return nil, fault.Invalidf(field, "unknown benefit codes: %s", strings.Join(unknown, ", "))
	}
	return ids, nil
}
