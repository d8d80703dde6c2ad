package membercard

import (
	"context"
	"fmt"
	"slices"

	"entgo.io/contrib/entgql"
	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/coupontemplate"
	"github.com/onemember/onemember/ent/schema/enum"
)

// totalColumn is the window count the coupon page selects next to each row.
const totalColumn = "card_total_count"

// FirstCoupons is the connection ent's Paginate builds for a member's
// coupons (with status, when not nil) ordered by expiry then id, for
// `first` (at least 1) and no cursor: the first coupons, the total count
// and the page info. Paginate counts, reads the page and loads the
// templates in three statements; this reads the count with the page
// (count(*) OVER ()) in one, and the templates from the cache.
func (r *Reader) FirstCoupons(ctx context.Context, memberID, first int, status *enum.CouponStatus) (*ent.CouponConnection, error) {
	if first < 1 {
		return nil, fmt.Errorf("first coupons: first is %d, want at least 1", first)
	}
	q := r.db.Coupon.Query().Where(coupon.MemberID(memberID))
	if status != nil {
		q.Where(coupon.StatusEQ(*status))
	}
	q.Order(coupon.ByExpiresAt(), coupon.ByID()).Limit(first + 1)
	// The modifier stays on q: All applies it to the rows it reads.
	q.Modify(func(s *sql.Selector) { s.AppendSelectExprAs(sql.Raw("count(*) OVER ()"), totalColumn) })
	nodes, err := q.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading coupons of member %d: %w", memberID, err)
	}
	var total int
	if len(nodes) > 0 {
		v, err := nodes[0].Value(totalColumn)
		if err != nil {
			return nil, fmt.Errorf("reading coupons of member %d: %w", memberID, err)
		}
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("reading coupons of member %d: count is %T", memberID, v)
		}
		total = int(n)
	}
	return r.connection(ctx, nodes, total, first)
}

// connection builds the connection Paginate would from the first+1 (at
// most) coupons read and the total count, with their templates.
func (r *Reader) connection(ctx context.Context, nodes []*ent.Coupon, total, first int) (*ent.CouponConnection, error) {
	conn := &ent.CouponConnection{TotalCount: total, Edges: make([]*ent.CouponEdge, 0, min(len(nodes), first))}
	if len(nodes) > first {
		conn.PageInfo.HasNextPage = true
		nodes = nodes[:first]
	}
	ids := make([]int, len(nodes))
	for i, c := range nodes {
		ids[i] = c.TemplateID
	}
	templates, err := r.Templates(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, c := range nodes {
		if c.Edges.Template = templates[c.TemplateID]; c.Edges.Template == nil {
			return nil, fmt.Errorf("coupon %d: template %d not found", c.ID, c.TemplateID)
		}
		conn.Edges = append(conn.Edges, &ent.CouponEdge{Node: c, Cursor: entgql.Cursor[int]{ID: c.ID, Value: c.ExpiresAt}})
	}
	if n := len(conn.Edges); n > 0 {
		conn.PageInfo.StartCursor = &conn.Edges[0].Cursor
		conn.PageInfo.EndCursor = &conn.Edges[n-1].Cursor
	}
	return conn, nil
}

// Templates returns the coupon templates of ids by id, from the cache or
// in one statement for those it does not hold.
func (r *Reader) Templates(ctx context.Context, ids []int) (map[int]*ent.CouponTemplate, error) {
	out := make(map[int]*ent.CouponTemplate, len(ids))
	var missing []int
	for _, id := range ids {
		if t, ok := r.templates.Get(id); ok {
			out[id] = t
		} else if !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	rows, err := r.db.CouponTemplate.Query().Where(coupontemplate.IDIn(missing...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading coupon templates: %w", err)
	}
	for _, t := range rows {
		r.templates.Add(t.ID, t)
		out[t.ID] = t
	}
	return out, nil
}

// CachedTemplate returns the coupon template of id when the cache holds it.
func (r *Reader) CachedTemplate(id int) (*ent.CouponTemplate, bool) { return r.templates.Get(id) }

// RememberTemplate caches t (read by a caller of its own).
func (r *Reader) RememberTemplate(t *ent.CouponTemplate) { r.templates.Add(t.ID, t) }
