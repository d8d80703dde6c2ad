// Package programme owns the programme's configuration: business units and
// stores, the benefit pool and which BUs honour each benefit, earning
// rules per BU, and paid membership plans. The tier ladder itself is
// internal/tier's.
package programme

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/benefit"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/earningrule"
	"github.com/onemember/onemember/ent/paidmembershipplan"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audit"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// MaxRate bounds earning rates (per yuan).
const MaxRate = 100

// Service reads and changes the programme configuration.
type Service struct{ db *ent.Client }

// New builds a Service.
func New(db *ent.Client) *Service { return &Service{db: db} }

// BusinessUnits lists BUs by code.
func (s *Service) BusinessUnits(ctx context.Context) ([]*ent.BusinessUnit, error) {
	return s.db.BusinessUnit.Query().Order(ent.Asc(businessunit.FieldCode)).All(ctx)
}

// Benefits lists the benefit pool.
func (s *Service) Benefits(ctx context.Context) ([]*ent.Benefit, error) {
	return s.db.Benefit.Query().Order(ent.Asc(benefit.FieldID)).All(ctx)
}

// Plans lists the active paid membership plans by price.
func (s *Service) Plans(ctx context.Context) ([]*ent.PaidMembershipPlan, error) {
	return s.db.PaidMembershipPlan.Query().Where(paidmembershipplan.Active(true)).
		Order(ent.Asc(paidmembershipplan.FieldPrice)).All(ctx)
}

// EarningRules lists each BU's rule; BUs without one earn at the default
// (one point and one growth per yuan) and are listed with it, unsaved.
func (s *Service) EarningRules(ctx context.Context) ([]*ent.EarningRule, error) {
	bus, err := s.BusinessUnits(ctx)
	if err != nil {
		return nil, err
	}
	rules, err := s.db.EarningRule.Query().WithBusinessUnit().All(ctx)
	if err != nil {
		return nil, err
	}
	byBU := map[int]*ent.EarningRule{}
	for _, r := range rules {
		byBU[r.BusinessUnitID] = r
	}
	out := make([]*ent.EarningRule, 0, len(bus))
	for _, b := range bus {
		r, ok := byBU[b.ID]
		if !ok {
			r = &ent.EarningRule{BusinessUnitID: b.ID, PointsPerYuanPermille: 1000, GrowthPerYuanPermille: 1000}
			r.Edges.BusinessUnit = b
		}
		out = append(out, r)
	}
	return out, nil
}

// BenefitInput defines a benefit of the pool.
type BenefitInput struct {
	Code, Name        string
	Description       *string
	Kind              enum.BenefitKind
	BusinessUnitCodes []string
}

// Validate reports every problem at once.
func (in BenefitInput) Validate() error {
	var errs []error
	if strings.TrimSpace(in.Code) == "" {
		errs = append(errs, fault.Invalidf("code", "is required"))
	}
	if strings.TrimSpace(in.Name) == "" {
		errs = append(errs, fault.Invalidf("name", "is required"))
	}
	if !enum.Valid(in.Kind) {
		errs = append(errs, fault.Invalidf("kind", "is not a benefit kind"))
	}
	return errors.Join(errs...)
}

// UpsertBenefit creates or changes a benefit by code, with the BUs that
// honour it (none: all).
func (s *Service) UpsertBenefit(ctx context.Context, in BenefitInput) (*ent.Benefit, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	b, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Benefit, error) {
		bus, err := businessUnitIDs(ctx, tx.Client(), in.BusinessUnitCodes)
		if err != nil {
			return nil, err
		}
		b, err := tx.Benefit.Query().Where(benefit.Code(in.Code)).ForUpdate().Only(ctx)
		switch {
		case ent.IsNotFound(err):
			create := tx.Benefit.Create().SetCode(in.Code).SetName(in.Name).SetKind(in.Kind).AddBusinessUnitIDs(bus...)
			if in.Description != nil {
				create.SetDescription(*in.Description)
			}
			b, err = create.Save(ctx)
		case err == nil:
			up := tx.Benefit.UpdateOne(b).SetName(in.Name).SetKind(in.Kind).ClearBusinessUnits().AddBusinessUnitIDs(bus...)
			if in.Description != nil {
				up.SetDescription(*in.Description)
			}
			b, err = up.Save(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("saving benefit: %w", err)
		}
		return b, audit.Record(ctx, tx.Client(), audit.Entry{
			Actor: auth.ViewerFrom(ctx).Actor(), Action: "benefit.upsert", SubjectType: "Benefit", SubjectID: b.ID,
			Detail: map[string]any{"code": in.Code, "businessUnits": in.BusinessUnitCodes},
		})
	})
	return database.Detach(b), err
}

// Permille converts a rate per yuan to permille, naming field when it is
// out of range.
func Permille(field string, rate float64) (int, error) {
	if math.IsNaN(rate) || rate < 0 || rate > MaxRate {
		return 0, fault.Invalidf(field, "must be between 0 and %d", MaxRate)
	}
	return int(math.Round(rate * 1000)), nil
}

// SetEarningRule sets a BU's earning rates.
func (s *Service) SetEarningRule(ctx context.Context, buCode string, pointsPerYuan, growthPerYuan float64) (*ent.EarningRule, error) {
	p, perr := Permille("pointsPerYuan", pointsPerYuan)
	g, gerr := Permille("growthPerYuan", growthPerYuan)
	if err := errors.Join(perr, gerr); err != nil {
		return nil, err
	}
	r, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.EarningRule, error) {
		bus, err := businessUnitIDs(ctx, tx.Client(), []string{buCode})
		if err != nil {
			return nil, err
		}
		r, err := tx.EarningRule.Query().Where(earningrule.BusinessUnitID(bus[0])).ForUpdate().Only(ctx)
		switch {
		case ent.IsNotFound(err):
			r, err = tx.EarningRule.Create().SetBusinessUnitID(bus[0]).
				SetPointsPerYuanPermille(p).SetGrowthPerYuanPermille(g).Save(ctx)
		case err == nil:
			r, err = tx.EarningRule.UpdateOne(r).SetPointsPerYuanPermille(p).SetGrowthPerYuanPermille(g).Save(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("saving earning rule: %w", err)
		}
		return r, audit.Record(ctx, tx.Client(), audit.Entry{
			Actor: auth.ViewerFrom(ctx).Actor(), Action: "earning_rule.set", SubjectType: "EarningRule", SubjectID: r.ID,
			Detail: map[string]any{"businessUnit": buCode, "pointsPerYuan": pointsPerYuan, "growthPerYuan": growthPerYuan},
		})
	})
	return database.Detach(r), err
}

func businessUnitIDs(ctx context.Context, db *ent.Client, codes []string) ([]int, error) {
	ids := make([]int, 0, len(codes))
	for _, c := range codes {
		id, err := db.BusinessUnit.Query().Where(businessunit.Code(c)).OnlyID(ctx)
		if ent.IsNotFound(err) {
			return nil, fault.Invalidf("businessUnitCode", "unknown business unit %q", c)
		}
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}
