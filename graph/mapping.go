package graph

import (
	"context"
	"fmt"
	"slices"

	"entgo.io/contrib/entgql"
	"github.com/RoaringBitmap/roaring/v2"
	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/graph/model"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/order"
	"github.com/onemember/onemember/internal/platform/fault"
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

// ptrs turns a slice of values into the slice of pointers gqlgen wants.
func ptrs[T any](in []T) []*T {
	out := make([]*T, len(in))
	for i := range in {
		out[i] = &in[i]
	}
	return out
}

// derefs is the reverse of ptrs (gqlgen hands input lists as pointers).
func derefs[T any](in []*T) []T {
	out := make([]T, len(in))
	for i, p := range in {
		out[i] = *p
	}
	return out
}

// staffID is the signed-in staff member's id (nil for API clients).
func staffID(ctx context.Context) *int {
	if s := auth.ViewerFrom(ctx).Staff; s != nil {
		return &s.ID
	}
	return nil
}

func audienceInput(in model.CreateAudienceInput) audience.CreateInput {
	return audience.CreateInput{Name: in.Name, Rule: in.Rule, Priority: deref(in.Priority), Refresh: deref(in.Refresh)}
}

// memberPage pages through the members of a bitmap by member id (the
// cursor is the last member's id).
func (r *Resolver) memberPage(ctx context.Context, bm *roaring.Bitmap, first *int, after *entgql.Cursor[int]) (*ent.MemberConnection, error) {
	n := 50
	if first != nil {
		n = min(max(*first, 0), 500)
	}
	var from *uint32
	if after != nil {
		o, ok := audience.Ordinal(after.ID)
		if !ok {
			return nil, fault.Invalidf("after", "is not a cursor of this list")
		}
		from = &o
	}
	ids, more := audience.First(bm, n, from)
	members, err := r.membersByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	conn := &ent.MemberConnection{TotalCount: int(bm.GetCardinality()), PageInfo: entgql.PageInfo[int]{HasNextPage: more, HasPreviousPage: after != nil}}
	for _, m := range members {
		conn.Edges = append(conn.Edges, &ent.MemberEdge{Node: m, Cursor: entgql.Cursor[int]{ID: m.ID}})
	}
	if len(conn.Edges) > 0 {
		conn.PageInfo.StartCursor = &conn.Edges[0].Cursor
		conn.PageInfo.EndCursor = &conn.Edges[len(conn.Edges)-1].Cursor
	}
	return conn, nil
}

// membersByID loads members in the order of ids (missing ones left out).
func (r *Resolver) membersByID(ctx context.Context, ids []int) ([]*ent.Member, error) {
	found, err := r.DB.Member.Query().Where(member.IDIn(ids...)).All(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(found, func(a, b *ent.Member) int { return a.ID - b.ID })
	return found, nil
}

// intOr is *p, or def when p is nil (an argument passed as null).
func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// businessUnit is the business unit of id, nil for 0 (none); the few units
// are read once per operation.
func (r *Resolver) businessUnit(ctx context.Context, id int) (*ent.BusinessUnit, error) {
	if id == 0 {
		return nil, nil
	}
	units, err := loader.Once(ctx, "business-units", func() (map[int]*ent.BusinessUnit, error) {
		rows, err := r.DB.BusinessUnit.Query().All(ctx)
		if err != nil {
			return nil, err
		}
		m := make(map[int]*ent.BusinessUnit, len(rows))
		for _, u := range rows {
			m[u.ID] = u
		}
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	if u, ok := units[id]; ok {
		return u, nil
	}
	return r.DB.BusinessUnit.Get(ctx, id)
}

// campaignPayload wraps a campaign service's answer.
func campaignPayload(c *ent.Campaign, err error) (*model.CampaignPayload, error) {
	if err != nil {
		return nil, err
	}
	return &model.CampaignPayload{Campaign: c}, nil
}
