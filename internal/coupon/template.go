package coupon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/coupontemplate"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Bounds of a template.
const (
	MaxTitleLength    = 100
	MaxDaysAfterIssue = 3650
)

// TemplateInput defines a new coupon template. Amounts are in fen.
type TemplateInput struct {
	Title string
	Kind  enum.CouponKind
	// FaceValue is what FIXED_AMOUNT and THRESHOLD take off.
	FaceValue *int64
	// DiscountPercent is, for PERCENT_OFF only, the percent of the price
	// to pay (1..99; 80 is 20% off).
	DiscountPercent *int
	MinSpend        *int64
	// Validity: either the window ValidFrom..ValidTo or DaysAfterIssue.
	ValidFrom, ValidTo *time.Time
	DaysAfterIssue     *int
	TotalStock         int
	PerMemberLimit     int
	Claimable          bool
	// Empty BusinessUnitCodes and StoreCodes: valid everywhere.
	BusinessUnitCodes, StoreCodes []string
}

// Validate reports every problem of in at once, naming the fields of the
// GraphQL input.
func (in TemplateInput) Validate(now time.Time) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fault.Invalidf(field, format, args...))
	}
	switch n := utf8.RuneCountInString(strings.TrimSpace(in.Title)); {
	case n == 0:
		bad("title", "is required")
	case n > MaxTitleLength:
		bad("title", "is longer than %d characters", MaxTitleLength)
	}

	face, minSpend := deref(in.FaceValue), deref(in.MinSpend)
	if face < 0 {
		bad("faceValue", "must not be negative")
	}
	if minSpend < 0 {
		bad("minSpend", "must not be negative")
	}
	switch in.Kind {
	case KindFixedAmount, KindThreshold:
		if in.FaceValue == nil || face == 0 {
			bad("faceValue", "must be more than 0 for %s", in.Kind)
		}
		if in.DiscountPercent != nil {
			bad("discountPercent", "is only for PERCENT_OFF")
		}
		if in.Kind == KindThreshold && face > 0 && minSpend <= face {
			bad("minSpend", "must be more than faceValue for THRESHOLD")
		}
	case KindPercentOff:
		switch {
		case in.DiscountPercent == nil:
			bad("discountPercent", "is required for PERCENT_OFF")
		case *in.DiscountPercent < 1 || *in.DiscountPercent > 99:
			bad("discountPercent", "must be between 1 and 99 (the percent of the price to pay)")
		}
		if face != 0 {
			bad("faceValue", "is not used by PERCENT_OFF")
		}
	case KindGift:
		if face != 0 {
			bad("faceValue", "is not used by GIFT")
		}
		if in.DiscountPercent != nil {
			bad("discountPercent", "is only for PERCENT_OFF")
		}
	default:
		bad("kind", "must be one of %s", strings.Join(enum.CouponKind("").Values(), ", "))
	}

	window := in.ValidFrom != nil || in.ValidTo != nil
	switch {
	case window && in.DaysAfterIssue != nil:
		bad("validity", "give either validFrom and validTo or daysAfterIssue, not both")
	case !window && in.DaysAfterIssue == nil:
		bad("validity", "give either validFrom and validTo or daysAfterIssue")
	case window && (in.ValidFrom == nil || in.ValidTo == nil):
		bad("validity", "a window needs both validFrom and validTo")
	case window:
		if !in.ValidFrom.Before(*in.ValidTo) {
			bad("validity", "validFrom must be before validTo")
		}
		if !in.ValidTo.After(now) {
			bad("validity", "validTo must be in the future")
		}
	case *in.DaysAfterIssue < 1 || *in.DaysAfterIssue > MaxDaysAfterIssue:
		bad("daysAfterIssue", "must be between 1 and %d", MaxDaysAfterIssue)
	}

	if in.TotalStock < 1 {
		bad("totalStock", "must be at least 1")
	}
	if in.PerMemberLimit < 1 {
		bad("perMemberLimit", "must be at least 1")
	}
	for _, c := range in.BusinessUnitCodes {
		if strings.TrimSpace(c) == "" {
			bad("businessUnitCodes", "must not contain blank codes")
			break
		}
	}
	for _, c := range in.StoreCodes {
		if strings.TrimSpace(c) == "" {
			bad("storeCodes", "must not contain blank codes")
			break
		}
	}
	return errors.Join(errs...)
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// CreateTemplate validates in, resolves its business unit and store codes
// and creates the template.
func (s *Service) CreateTemplate(ctx context.Context, in TemplateInput) (*ent.CouponTemplate, error) {
	now := s.now()
	var errs []error
	if err := in.Validate(now); err != nil {
		errs = append(errs, err)
	}
	buCodes, storeCodes := uniqueTrimmed(in.BusinessUnitCodes), uniqueTrimmed(in.StoreCodes)
	bus, err := s.db.BusinessUnit.Query().Where(businessunit.CodeIn(buCodes...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading business units: %w", err)
	}
	stores, err := s.db.Store.Query().Where(store.CodeIn(storeCodes...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading stores: %w", err)
	}
	buIDs, missing := idsByCode(buCodes, bus, func(b *ent.BusinessUnit) (string, int) { return b.Code, b.ID })
	if len(missing) > 0 {
		errs = append(errs, fault.Invalidf("businessUnitCodes", "unknown business units: %s", strings.Join(missing, ", ")))
	}
	storeIDs, missing := idsByCode(storeCodes, stores, func(s *ent.Store) (string, int) { return s.Code, s.ID })
	if len(missing) > 0 {
		errs = append(errs, fault.Invalidf("storeCodes", "unknown stores: %s", strings.Join(missing, ", ")))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	create := s.db.CouponTemplate.Create().
		SetTitle(strings.TrimSpace(in.Title)).SetKind(in.Kind).
		SetFaceValue(deref(in.FaceValue)).SetNillableDiscountPercent(in.DiscountPercent).
		SetMinSpend(deref(in.MinSpend)).SetNillableDaysAfterIssue(in.DaysAfterIssue).
		SetTotalStock(in.TotalStock).SetPerMemberLimit(in.PerMemberLimit).
		SetClaimable(in.Claimable).SetCreatedAt(now).SetUpdatedAt(now).
		AddBusinessUnitIDs(buIDs...).AddStoreIDs(storeIDs...)
	if in.ValidFrom != nil {
		create.SetValidFrom(in.ValidFrom.UTC()).SetValidTo(in.ValidTo.UTC())
	}
	t, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating coupon template: %w", err)
	}
	return t, nil
}

func uniqueTrimmed(codes []string) []string {
	out := make([]string, 0, len(codes))
	for _, c := range codes {
		if c = strings.TrimSpace(c); c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// idsByCode maps codes to the ids of rows, listing the codes no row has.
func idsByCode[T any](codes []string, rows []T, key func(T) (string, int)) (ids []int, missing []string) {
	byCode := make(map[string]int, len(rows))
	for _, r := range rows {
		c, id := key(r)
		byCode[c] = id
	}
	for _, c := range codes {
		if id, ok := byCode[c]; ok {
			ids = append(ids, id)
		} else {
			missing = append(missing, c)
		}
	}
	return ids, missing
}

// Claimable is a template a member may claim now.
type Claimable struct {
	Template *ent.CouponTemplate
	// Remaining is the stock left (total_stock − issued_count).
	Remaining int
	// ClaimedByMe counts the member's coupons of the template, in any
	// status but VOID (what the per-member limit counts).
	ClaimedByMe int
	// ValidUntil is when a coupon claimed now would expire.
	ValidUntil *time.Time
}

// Claimable lists the claimable templates whose window is open now and
// that have stock left, oldest first, with what memberID already claimed.
// Templates the member holds the limit of are listed too (ClaimedByMe shows
// it), so that the mini-program can show them as claimed.
func (s *Service) Claimable(ctx context.Context, memberID int) ([]Claimable, error) {
	now := s.now()
	tpls, err := s.db.CouponTemplate.Query().
		Where(
			coupontemplate.Claimable(true),
			coupontemplate.Or(coupontemplate.ValidFromIsNil(), coupontemplate.ValidFromLTE(now)),
			coupontemplate.Or(coupontemplate.ValidToIsNil(), coupontemplate.ValidToGT(now)),
			func(s *sql.Selector) {
				s.Where(sql.ColumnsLT(s.C(coupontemplate.FieldIssuedCount), s.C(coupontemplate.FieldTotalStock)))
			},
		).
		Order(coupontemplate.ByID()).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing claimable templates: %w", err)
	}
	if len(tpls) == 0 {
		return nil, nil
	}
	ids := make([]int, len(tpls))
	for i, t := range tpls {
		ids[i] = t.ID
	}
	var counts []struct {
		TemplateID int `json:"template_id"`
		Count      int `json:"count"`
	}
	err = s.db.Coupon.Query().
		Where(entcoupon.MemberID(memberID), entcoupon.TemplateIDIn(ids...), entcoupon.StatusNEQ(enum.CouponVoid)).
		GroupBy(entcoupon.FieldTemplateID).
		Aggregate(ent.Count()).
		Scan(ctx, &counts)
	if err != nil {
		return nil, fmt.Errorf("counting claimed coupons: %w", err)
	}
	mine := make(map[int]int, len(counts))
	for _, c := range counts {
		mine[c.TemplateID] = c.Count
	}
	out := make([]Claimable, 0, len(tpls))
	for _, t := range tpls {
		until, err := s.expiresAt(t, now)
		if err != nil {
			return nil, err
		}
		out = append(out, Claimable{
			Template:    t,
			Remaining:   t.TotalStock - t.IssuedCount,
			ClaimedByMe: mine[t.ID],
			ValidUntil:  &until,
		})
	}
	return out, nil
}
