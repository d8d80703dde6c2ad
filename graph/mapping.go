package graph

import (
	"context"
	"fmt"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/graph/model"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/order"
	"github.com/onemember/onemember/internal/platform/loader"
	"github.com/onemember/onemember/internal/tier"
)

func memberAuthPayload(l identity.Login) *model.MemberAuthPayload {
	return &model.MemberAuthPayload{
		AccessToken: l.Access, RefreshToken: l.Refresh, ExpiresAt: l.ExpiresAt,
		IsNewMember: l.IsNewMember, Member: l.Member,
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// account loads a member's account through the operation's loader, so
// the several balance fields of one page cost one query.
func (r *Resolver) account(ctx context.Context, memberID int) (*ent.Account, error) {
	if l := loader.From(ctx); l != nil {
		return l.Account.Load(ctx, memberID)()
	}
	return account.Get(ctx, r.DB, memberID)
}

// couponTemplate returns a coupon's template, eager-loaded or through the
// operation's loader.
func (r *Resolver) couponTemplate(ctx context.Context, c *ent.Coupon) (*ent.CouponTemplate, error) {
	if c.Edges.Template != nil {
		return c.Edges.Template, nil
	}
	if l := loader.From(ctx); l != nil {
		return l.CouponTemplate.Load(ctx, c.TemplateID)()
	}
	return r.DB.CouponTemplate.Get(ctx, c.TemplateID)
}

func (r *Resolver) store(ctx context.Context, code string) (*ent.Store, error) {
	st, err := r.DB.Store.Query().Where(store.Code(code)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, order.ErrUnknownStore
	}
	return st, err
}

func memberRef(in *model.MemberRefInput) identity.MemberRef {
	if in == nil {
		return identity.MemberRef{}
	}
	return identity.MemberRef{MemberID: in.MemberID, MemberNo: in.MemberNo, MemberCode: in.MemberCode, Phone: in.Phone}
}

func tierInput(in model.TierInput) tier.TierInput {
	return tier.TierInput{Code: in.Code, Name: in.Name, Rank: in.Rank, Threshold: int64(in.Threshold),
		MonthlySpendRequired: in.MonthlySpendRequired, ReferralsRequired: in.ReferralsRequired,
		RetentionMonths: in.RetentionMonths, PointsMultiplier: in.PointsMultiplier, BenefitCodes: in.BenefitCodes}
}

func ingestInput(in model.IngestOrderInput) order.IngestInput {
	out := order.IngestInput{ExternalID: in.ExternalID, Channel: in.Channel, StoreCode: in.StoreCode,
		Member: memberRef(in.Member), PaidAt: in.PaidAt, Amount: in.Amount,
		CouponOrderRef: deref(in.CouponOrderRef), CampaignID: in.CampaignID}
	for _, it := range in.Items {
		out.Items = append(out.Items, order.Item{SKU: it.Sku, Name: it.Name, Category: deref(it.Category),
			Brand: deref(it.Brand), Quantity: it.Quantity, UnitPrice: it.UnitPrice, Amount: it.Amount})
	}
	for _, p := range in.Payments {
		out.Payments = append(out.Payments, order.Payment{Method: p.Method, Amount: p.Amount,
			Points: int64(deref(p.Points)), StoredValueEntryID: p.StoredValueTransactionID})
	}
	return out
}

// tierStatus explains the member's tier once per operation (growth and
// tierStatus both need it).
func (r *Resolver) tierStatus(ctx context.Context, m *ent.Member) (tier.Status, error) {
	return loader.Once(ctx, fmt.Sprintf("tier-status:%d", m.ID), func() (tier.Status, error) {
		acct, err := r.account(ctx, m.ID)
		if err != nil {
			return tier.Status{}, err
		}
		return r.TierService.StatusOf(ctx, r.DB, m, acct)
	})
}

// couponStats computes a template's statistics once per operation.
func (r *Resolver) couponStats(ctx context.Context, templateID int) (coupon.Stats, error) {
	return loader.Once(ctx, fmt.Sprintf("coupon-stats:%d", templateID), func() (coupon.Stats, error) {
		return r.Coupons.Stats(ctx, templateID)
	})
}

// memberships loads the member's paid memberships once per operation
// (paidMemberships and benefits both need them).
func (r *Resolver) memberships(ctx context.Context, memberID int) ([]*ent.PaidMembership, error) {
	return loader.Once(ctx, fmt.Sprintf("memberships:%d", memberID), func() ([]*ent.PaidMembership, error) {
		return r.Membership.Memberships(ctx, memberID)
	})
}
