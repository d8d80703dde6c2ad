// Package membership owns paid memberships (付费会员卡) and the benefits a
// member enjoys: plans sold by period, purchases that start or extend a
// membership (idempotent on the payment reference), the expiry job, and
// the resolution of effective benefits with their source (tier, paid plan,
// birthday month), filtered by the BUs that honour them.
package membership

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/benefit"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/paidmembership"
	"github.com/onemember/onemember/ent/paidmembershipplan"
	"github.com/onemember/onemember/ent/paidmembershippurchase"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/ttlcache"
)

// Errors.
var (
	ErrUnknownPlan = fault.Invalidf("planCode", "is not an active plan")
	ErrWrongAmount = fault.Invalidf("amount", "does not match the plan price")
)

// Service manages paid memberships and benefits.
type Service struct {
	db        *ent.Client
	zone      *time.Location
	now       func() time.Time
	catalogue ttlcache.Value[[]*ent.Benefit]
	// plans caches the plans by id for what members are shown (the plan
	// of each membership on the home page); selling reads the table.
	plans ttlcache.Value[map[int]*ent.PaidMembershipPlan]
}

// New builds a Service.
func New(db *ent.Client, zone *time.Location, now func() time.Time) *Service {
	return &Service{db: db, zone: zone, now: now, catalogue: ttlcache.Value[[]*ent.Benefit]{TTL: catalogueTTL},
		plans: ttlcache.Value[map[int]*ent.PaidMembershipPlan]{TTL: catalogueTTL}}
}

// PurchaseInput is a paid-card payment to record.
type PurchaseInput struct {
	MemberID   int
	PlanCode   string
	PaymentRef string
	Amount     int64
}

// Record starts or extends the member's membership of the plan: buying
// while active extends from the current end. The same payment reference
// again changes nothing and answers duplicate.
func (s *Service) Record(ctx context.Context, in PurchaseInput) (*ent.PaidMembership, bool, error) {
	if in.PaymentRef == "" {
		return nil, false, fault.Invalidf("paymentRef", "is required")
	}
	if m, ok, err := s.purchased(ctx, s.db, in.PaymentRef); ok || err != nil {
		return m, ok, err
	}
	plan, err := s.db.PaidMembershipPlan.Query().
		Where(paidmembershipplan.Code(in.PlanCode), paidmembershipplan.Active(true)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, false, ErrUnknownPlan
	}
	if err != nil {
		return nil, false, err
	}
	if in.Amount != plan.Price {
		return nil, false, ErrWrongAmount
	}
	m, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.PaidMembership, error) {
		if _, err := account.Lock(ctx, tx, in.MemberID); err != nil {
			return nil, err
		}
		now := s.now()
		pm, err := tx.PaidMembership.Query().
			Where(paidmembership.MemberID(in.MemberID), paidmembership.PlanID(plan.ID)).ForUpdate().Only(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return nil, err
		}
		start := now
		if pm != nil && pm.Status == paidmembership.StatusACTIVE && pm.ExpiresAt.After(now) {
			start = pm.ExpiresAt
		}
		end := AddPeriod(start.In(s.zone), plan.Period)
		if pm == nil {
			pm, err = tx.PaidMembership.Create().SetMemberID(in.MemberID).SetPlanID(plan.ID).
				SetStartedAt(now).SetExpiresAt(end).Save(ctx)
		} else {
			up := tx.PaidMembership.UpdateOne(pm).SetExpiresAt(end).SetStatus(paidmembership.StatusACTIVE)
			if start.Equal(now) {
				up.SetStartedAt(now)
			}
			pm, err = up.Save(ctx)
		}
		if err != nil {
			return nil, fmt.Errorf("saving membership: %w", err)
		}
		return pm, tx.PaidMembershipPurchase.Create().SetPaymentRef(in.PaymentRef).SetMembershipID(pm.ID).
			SetAmount(in.Amount).SetPeriodStart(start).SetPeriodEnd(end).Exec(ctx)
	})
	if database.IsUniqueViolation(err) {
		return s.purchased(ctx, s.db, in.PaymentRef)
	}
	return database.Detach(m), false, err
}

func (s *Service) purchased(ctx context.Context, db *ent.Client, ref string) (*ent.PaidMembership, bool, error) {
	p, err := db.PaidMembershipPurchase.Query().Where(paidmembershippurchase.PaymentRef(ref)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	m, err := db.PaidMembership.Get(ctx, p.MembershipID)
	return m, err == nil, err
}

// AddPeriod adds one plan period to t (calendar months in t's zone).
func AddPeriod(t time.Time, p enum.PlanPeriod) time.Time {
	switch p {
	case "QUARTER":
		return t.AddDate(0, 3, 0)
	case "YEAR":
		return t.AddDate(1, 0, 0)
	}
	return t.AddDate(0, 1, 0)
}

// Expire marks memberships past their end EXPIRED; returns how many.
func (s *Service) Expire(ctx context.Context) (int, error) {
	return s.db.PaidMembership.Update().
		Where(paidmembership.StatusEQ(paidmembership.StatusACTIVE), paidmembership.ExpiresAtLTE(s.now())).
		SetStatus(paidmembership.StatusEXPIRED).Save(ctx)
}

// Memberships lists the member's memberships, active first.
func (s *Service) Memberships(ctx context.Context, memberID int) ([]*ent.PaidMembership, error) {
	return s.db.PaidMembership.Query().Where(paidmembership.MemberID(memberID)).WithPlan().
		Order(ent.Asc(paidmembership.FieldStatus), ent.Desc(paidmembership.FieldExpiresAt)).All(ctx)
}

// DisplayPlan returns the plan with this id as members are shown it: from
// a cache of every plan that may lag an edit made on another replica by
// catalogueTTL (a plan created since is read from the table).
func (s *Service) DisplayPlan(ctx context.Context, id int) (*ent.PaidMembershipPlan, error) {
	plans, err := s.plans.Get(ctx, s.loadPlans)
	if err != nil {
		return nil, err
	}
	if p, ok := plans[id]; ok {
		return p, nil
	}
	p, err := s.db.PaidMembershipPlan.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("reading plan %d: %w", id, err)
	}
	return p, nil
}

func (s *Service) loadPlans(ctx context.Context) (map[int]*ent.PaidMembershipPlan, error) {
	ps, err := s.db.PaidMembershipPlan.Query().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading plans: %w", err)
	}
	out := make(map[int]*ent.PaidMembershipPlan, len(ps))
	for _, p := range ps {
		out[p.ID] = p
	}
	return out, nil
}

// Source says why a member has a benefit.
type Source string

// Sources.
const (
	FromTier     Source = "TIER"
	FromPlan     Source = "PLAN"
	FromBirthday Source = "BIRTHDAY"
)

// Effective is a benefit the member enjoys and why.
type Effective struct {
	Benefit *ent.Benefit
	Source  Source
}

// Benefits resolves the member's effective benefits: the tier's, those of
// active paid plans (memberships are the member's, as Memberships returns
// them), and, in the birthday month only, birthday gifts (with source
// BIRTHDAY). With buCode, only benefits that BU honours (a benefit with no
// BUs is honoured everywhere). A benefit granted twice is listed once,
// with its first source. The benefit catalogue comes from a cache that may
// lag an edit made on another replica by catalogueTTL.
func (s *Service) Benefits(ctx context.Context, m *ent.Member, memberships []*ent.PaidMembership, buCode *string) ([]Effective, error) {
	all, err := s.catalogue.Get(ctx, s.loadCatalogue)
	if err != nil {
		return nil, err
	}
	now := s.now()
	birthdayMonth := m.BirthMonth != nil && *m.BirthMonth == int(now.In(s.zone).Month())
	activePlans := map[int]bool{}
	for _, pm := range memberships {
		if pm.Status == paidmembership.StatusACTIVE && pm.ExpiresAt.After(now) {
			activePlans[pm.PlanID] = true
		}
	}
	var out []Effective
	seen := map[int]bool{}
	add := func(src Source, grants func(*ent.Benefit) bool) {
		for _, b := range all {
			if seen[b.ID] || !grants(b) || !honouredBy(b, buCode) {
				continue
			}
			s := src
			if b.Kind == "BIRTHDAY_GIFT" {
				if !birthdayMonth {
					continue
				}
				s = FromBirthday
			}
			seen[b.ID] = true
			out = append(out, Effective{Benefit: b, Source: s})
		}
	}
	if m.TierID != nil {
		add(FromTier, func(b *ent.Benefit) bool {
			return slices.ContainsFunc(b.Edges.Tiers, func(t *ent.Tier) bool { return t.ID == *m.TierID })
		})
	}
	add(FromPlan, func(b *ent.Benefit) bool {
		return slices.ContainsFunc(b.Edges.Plans, func(p *ent.PaidMembershipPlan) bool { return activePlans[p.ID] })
	})
	return out, nil
}

func honouredBy(b *ent.Benefit, buCode *string) bool {
	return buCode == nil || len(b.Edges.BusinessUnits) == 0 ||
		slices.ContainsFunc(b.Edges.BusinessUnits, func(u *ent.BusinessUnit) bool { return u.Code == *buCode })
}

// catalogueTTL is how long members may be shown benefits as configured
// before an edit on another replica.
const catalogueTTL = 2 * time.Second

// loadCatalogue reads every benefit with the tiers, plans and BUs that
// carry it, by id.
func (s *Service) loadCatalogue(ctx context.Context) ([]*ent.Benefit, error) {
	bs, err := s.db.Benefit.Query().
		WithTiers(func(q *ent.TierQuery) { q.Select(tier.FieldID) }).
		WithPlans(func(q *ent.PaidMembershipPlanQuery) { q.Select(paidmembershipplan.FieldID) }).
		WithBusinessUnits(func(q *ent.BusinessUnitQuery) { q.Select(businessunit.FieldID, businessunit.FieldCode) }).
		Order(ent.Asc(benefit.FieldID)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading benefit catalogue: %w", err)
	}
	return bs, nil
}
