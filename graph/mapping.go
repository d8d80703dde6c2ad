package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"entgo.io/contrib/entgql"
	"github.com/99designs/gqlgen/graphql"
	"github.com/RoaringBitmap/roaring/v2"
	"github.com/onemember/onemember/ent"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/graph/model"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/membercard"
	"github.com/onemember/onemember/internal/order"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/loader"
	"github.com/onemember/onemember/internal/tier"
	"github.com/vektah/gqlparser/v2/ast"
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

// couponTemplate returns a coupon's template (its terms: title, kind,
// amounts) from the template cache, their terms never changing, or through
// the operation's loader. An eager-loaded c.Edges.Template is not trusted:
// when the query also selects the coupon's template field, entgql loads
// only the columns that field selects (template { id title } leaves kind
// and the amounts zero).
func (r *Resolver) couponTemplate(ctx context.Context, c *ent.Coupon) (*ent.CouponTemplate, error) {
	cards := r.Cards
	if t, ok := cards.CachedTemplate(c.TemplateID); ok {
		return t, nil
	}
	var (
		t   *ent.CouponTemplate
		err error
	)
	if l := loader.From(ctx); l != nil {
		t, err = l.CouponTemplate.Load(ctx, c.TemplateID)()
	} else {
		t, err = r.DB.CouponTemplate.Get(ctx, c.TemplateID)
	}
	if err != nil {
		return nil, err
	}
	cards.RememberTemplate(t)
	return t, nil
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

// card returns m's card when m is the signed-in member (the home page and
// the mini-program's other screens), read once per operation (see
// cardKey) together with the first page of coupons the operation asks of
// m (see cardCoupons); ok is false for anyone else: staff pages list many
// members, whose fields keep the per-field loaders that batch across
// members.
func (r *Resolver) card(ctx context.Context, m *ent.Member) (c *membercard.Card, ok bool, err error) {
	if v := auth.ViewerFrom(ctx); !v.IsMember() || v.Member.ID != m.ID {
		return nil, false, nil
	}
	key, shared := cardKey(ctx, m.ID)
	if !shared {
		c, err = r.readCard(ctx, m, membercard.CouponPage{})
		return c, true, err
	}
	c, err = loader.Once(ctx, key, func() (*membercard.Card, error) {
		page, _ := cardCoupons(ctx)
		return r.readCard(ctx, m, page)
	})
	return c, true, err
}

// readCard reads m's card. When the viewer came from the authentication
// cache and its row has changed since (a change the cache has not heard
// of yet: another replica's, or a tier change, within the cache's check
// interval), the card is read again for the row as it is now:
// Card.Member is the row it was computed for.
func (r *Resolver) readCard(ctx context.Context, m *ent.Member, page membercard.CouponPage) (*membercard.Card, error) {
	c, err := r.Cards.Read(ctx, m, page)
	if v := auth.ViewerFrom(ctx); err != nil || !v.Cached || c.MemberVersion == v.Version {
		return c, err
	}
	fresh, err := r.DB.Member.Get(ctx, m.ID)
	if err != nil {
		return nil, fmt.Errorf("re-reading member %d: %w", m.ID, err)
	}
	return r.Cards.Read(ctx, fresh, page)
}

// memberTypes are the types a selection on a Member satisfies.
var memberTypes = []string{"Member", "Node"}

// cardFields are the member's fields that read the card besides coupons.
var cardFields = map[string]bool{"growth": true, "points": true, "storedValue": true, "tierStatus": true,
	"paidMemberships": true, "benefits": true}

// cardCoupons is the first page of coupons the operation asks of the
// member whose field ctx resolves (its coupons field with first and no
// after), found in the selection on the member (the parent field's), so
// that the card reads it along; others says whether that selection has
// fields besides coupons that read the card. The coupons field takes the
// page from the card only when its own arguments are those
// (Card.FirstCoupons), so a selection read wrong costs a statement, never
// a wrong page.
func cardCoupons(ctx context.Context) (page membercard.CouponPage, others bool) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Parent == nil || fc.Parent.Field.Field == nil {
		return page, false
	}
	return cardSelection(graphql.GetOperationContext(ctx), fc.Parent.Field.Selections)
}

// meCard is the card of m, the authentication cache's copy of the viewer,
// read by the me field when its selection reads the card (with the first
// page of coupons it asks), under the key its fields share; ok is false
// otherwise. Card.Member is then the member's row as of the card
// (readCard), which me answers, so that every field agrees with it.
func (r *Resolver) meCard(ctx context.Context, m *ent.Member) (c *membercard.Card, ok bool, err error) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Field.Field == nil {
		return nil, false, nil
	}
	page, others := cardSelection(graphql.GetOperationContext(ctx), fc.Field.Selections)
	key, shared := cardKey(ctx, m.ID)
	if !others || !shared {
		return nil, false, nil
	}
	c, err = loader.Once(ctx, key, func() (*membercard.Card, error) {
		return r.readCard(ctx, m, page)
	})
	return c, true, err
}

// cardSelection is cardCoupons of a selection on a member.
func cardSelection(oc *graphql.OperationContext, sel ast.SelectionSet) (page membercard.CouponPage, others bool) {
	for _, f := range graphql.CollectFields(oc, sel, memberTypes) {
		if f.Name != "coupons" || page.First > 0 {
			others = others || cardFields[f.Name]
			continue
		}
		args := f.ArgumentMap(oc.Variables)
		first, ok := intArg(args["first"])
		if !ok || first < 1 || args["after"] != nil {
			continue
		}
		switch st := args["status"].(type) {
		case nil:
			page = membercard.CouponPage{First: first}
		case string:
			page = membercard.CouponPage{First: first, Status: new(enum.CouponStatus(st))}
		}
	}
	return page, others
}

// readsCard reports whether fields besides coupons read the card (see
// cardCoupons).
func readsCard(ctx context.Context) bool {
	_, o := cardCoupons(ctx)
	return o
}

// intArg is an Int argument as the operation gives it (a literal or a
// variable).
func intArg(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), float64(int(n)) == n
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	}
	return 0, false
}

// cardKey is the key the fields of an operation share a card under: the
// member's for a query; the member's and the top-level field's for a
// mutation, whose top-level fields run one after another, each seeing the
// changes of the previous; none (false) for a subscription, whose
// operation lives on while balances change.
func cardKey(ctx context.Context, memberID int) (string, bool) {
	if !graphql.HasOperationContext(ctx) {
		return "", false
	}
	switch graphql.GetOperationContext(ctx).Operation.Operation {
	case ast.Query:
		return "card:" + strconv.Itoa(memberID), true
	case ast.Mutation:
		if rf := graphql.GetRootFieldContext(ctx); rf != nil && rf.Field.Field != nil {
			return "card:" + strconv.Itoa(memberID) + ":" + rf.Field.Alias, true
		}
	}
	return "", false
}

// balances are m's account figures, from the card or the account loader.
func (r *Resolver) balances(ctx context.Context, m *ent.Member) (membercard.Balances, error) {
	if c, ok, err := r.card(ctx, m); ok {
		if err != nil {
			return membercard.Balances{}, err
		}
		return c.Balances, nil
	}
	acct, err := r.account(ctx, m.ID)
	if err != nil {
		return membercard.Balances{}, err
	}
	return membercard.BalancesOf(acct), nil
}

// tierStatus explains the member's tier once per operation (growth and
// tierStatus both need it).
func (r *Resolver) tierStatus(ctx context.Context, m *ent.Member) (tier.Status, error) {
	if c, ok, err := r.card(ctx, m); ok {
		if err != nil {
			return tier.Status{}, err
		}
		return c.Status, nil
	}
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
func (r *Resolver) memberships(ctx context.Context, m *ent.Member) ([]*ent.PaidMembership, error) {
	if c, ok, err := r.card(ctx, m); ok {
		if err != nil {
			return nil, err
		}
		return c.Memberships, nil
	}
	return loader.Once(ctx, fmt.Sprintf("memberships:%d", m.ID), func() ([]*ent.PaidMembership, error) {
		return r.Membership.Memberships(ctx, m.ID)
	})
}

// expiringSoon lists the member's points expiring within: from the card
// its parent field (points) read, or the ledger.
func (r *Resolver) expiringSoon(ctx context.Context, memberID int, within time.Duration) ([]ledger.Expiring, error) {
	if key, ok := cardKey(ctx, memberID); ok {
		if c, ok := loader.Peek[*membercard.Card](ctx, key); ok {
			if xs, ok := c.ExpiringSoon(within); ok {
				return xs, nil
			}
		}
	}
	return r.Ledger.ExpiringSoon(ctx, r.DB, memberID, within)
}

// firstCoupons is m's coupons connection: the first page (no cursor),
// which is what the home page asks, from the card or in one statement of
// its own; other pages through Paginate.
func (r *Resolver) firstCoupons(ctx context.Context, m *ent.Member, first *int, after *entgql.Cursor[int], status *enum.CouponStatus) (*ent.CouponConnection, error) {
	if first == nil || *first < 1 || after != nil {
		q := r.DB.Coupon.Query().Where(entcoupon.MemberID(m.ID))
		if status != nil {
			q.Where(entcoupon.StatusEQ(*status))
		}
		return q.Paginate(ctx, after, first, nil, nil, ent.WithCouponOrder(&ent.CouponOrder{
			Direction: entgql.OrderDirectionAsc, Field: ent.CouponOrderFieldExpiresAt,
		}))
	}
	// The card when the operation reads it anyway (the home page); a list
	// of coupons alone is the one statement of FirstCoupons.
	if key, shared := cardKey(ctx, m.ID); shared {
		if loader.Started(ctx, key) || readsCard(ctx) {
			if c, ok, err := r.card(ctx, m); ok {
				if err != nil {
					return nil, err
				}
				if conn, ok := c.FirstCoupons(*first, status); ok {
					return conn, nil
				}
			}
		}
	}
	return r.Cards.FirstCoupons(ctx, m.ID, *first, status)
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
