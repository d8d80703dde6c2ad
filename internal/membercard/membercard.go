// Package membercard owns the member's card: what the mini-program's home
// page shows of the signed-in member (balances, the explainable tier, points
// expiring soon, paid memberships and the first page of coupons) read in
// one statement, and that page of coupons alone in one statement for the
// screens that list only coupons. The rules stay with their domains
// (tier.StatusPlan, ledger.ExpiringIn, membership.DisplayPlan, ent's
// Paginate for the connection): this package only reads the rows they need
// in as few round trips as it can, and checks every shortcut against the
// rule it stands for.
package membercard

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/paidmembership"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/membership"
	"github.com/onemember/onemember/internal/tier"
)

// lotGroups is how many of the member's earliest expiry instants the card
// reads: enough for the window the home page asks (30 days) for nearly
// every member; ExpiringSoon answers the others.
const lotGroups = 16

// Balances are the account figures a member is shown.
type Balances struct {
	Points          int64
	Growth          int64
	StoredPrincipal int64
	StoredBonus     int64
	HasPayPassword  bool
}

// BalancesOf are the balances of an account row.
func BalancesOf(a *ent.Account) Balances {
	return Balances{Points: a.PointsBalance, Growth: a.GrowthValue, StoredPrincipal: a.StoredPrincipal,
		StoredBonus: a.StoredBonus, HasPayPassword: a.PayPasswordHash != ""}
}

// Card is one member's card as of one instant. It is read for one GraphQL
// operation and never kept longer.
type Card struct {
	// Member is the member row the card was computed for (its tier and
	// registration decide the tier status), and MemberVersion the version
	// (xmin) of that member's row in the card's snapshot: a Member read
	// with another version is behind the card (see Read).
	Member        *ent.Member
	MemberVersion int64
	Balances      Balances
	Status        tier.Status
	// Memberships are the member's paid memberships with their plans,
	// in membership.Service.Memberships' order (by status, then latest
	// expiry). Built from the card's rows, they have no ent client: their
	// one edge, the plan, is loaded.
	Memberships []*ent.PaidMembership

	asOf     time.Time
	expiring []ledger.Expiring // the earliest lotGroups expiry instants after asOf
	// ruleWindow is set when PostgreSQL's retention window differed from
	// the rule's and Status was read by tier.Service.StatusOf instead.
	ruleWindow bool
	page       CouponPage // the coupons read with the card, First 0 for none
	coupons    *ent.CouponConnection
}

// CouponPage asks the card for the member's first coupons (with Status,
// when not nil), as FirstCoupons reads them.
type CouponPage struct {
	First  int
	Status *enum.CouponStatus
}

// FirstCoupons is Reader.FirstCoupons of the card's member, read with the
// card; ok is false when the card did not read that page.
func (c *Card) FirstCoupons(first int, status *enum.CouponStatus) (*ent.CouponConnection, bool) {
	same := c.page.First > 0 && c.page.First == first &&
		(c.page.Status == nil) == (status == nil) && (status == nil || *c.page.Status == *status)
	return c.coupons, same
}

// ExpiringSoon is ledger.Service.ExpiringSoon as of the card's instant;
// ok is false when the card cannot tell (more expiry instants in the
// window than it read).
func (c *Card) ExpiringSoon(within time.Duration) ([]ledger.Expiring, bool) {
	return ledger.ExpiringIn(c.expiring, lotGroups, c.asOf, within)
}

// Reader reads cards and coupon pages.
type Reader struct {
	db          *ent.Client
	tiers       *tier.Service
	memberships *membership.Service
	// templates holds coupon templates by id: their terms never change
	// once created (internal/coupon has no update of them; issuing
	// changes only the hidden issued_count), so the TTL only bounds memory
	// and edits made by hand in SQL.
	templates *expirable.LRU[int, *ent.CouponTemplate]
	cardDB    *ent.Client // the card pool (batch.go), nil for none
	batcher   batcher
}

// templateTTL is how long a coupon template is kept; templateMax how many.
const (
	templateTTL = 30 * time.Second
	templateMax = 10_000
)

// New returns a Reader over db. cardDB, when not nil, is a pool of Runners
// connections opened with Session, on which cards read at the same time
// share statements (batch.go); without it each card is read alone on db.
func New(db, cardDB *ent.Client, tiers *tier.Service, memberships *membership.Service) *Reader {
	return &Reader{db: db, cardDB: cardDB, tiers: tiers, memberships: memberships,
		templates: expirable.NewLRU[int, *ent.CouponTemplate](templateMax, nil, templateTTL)}
}

// Review modes of cardSQL's $6 (tier.StatusPlan.Review).
const (
	reviewNone      = 0 // no tier: the retention window is the promotion window
	reviewOnce      = 1 // everyMonths after the period start
	reviewRecurring = 2 // the first such anniversary after now (the lowest tier)
)

// Kinds of cardSQL's rows.
const (
	rowCard       = 0 // one: the balances, growth sums and expiry instants
	rowMembership = 1 // one a paid membership
	rowCoupon     = 2 // one a coupon of the page, with the page's total count
)

// cardSQL reads a member's card in one statement. $1 member id, $2 now,
// $3 start of the promotion window, $4 registration (the period start of a
// member never moved), $5 the tier's retention months, $6 the review mode,
// $7 the business time zone, $8 lotGroups, $9 how many coupons to read
// (the page and one more, to tell whether there is a next page; 0 for
// none), $10 their status (NULL for any).
//
// The retention window depends on the account's tier_since, so it is
// computed here rather than passed: s, r and w are tier.StatusPlan's
// WindowFrom in SQL, each computed once (OFFSET 0 keeps PostgreSQL from
// copying their expressions into every use) (calendar months in the business zone, the day clamped
// to the end of a shorter month, as PostgreSQL adds months). The statement
// returns the window it summed; Read compares it with WindowFrom and reads
// the status the slow way when they differ (a daylight-saving gap, a zone
// PostgreSQL names differently).
//
// Rows: the card's, then the memberships in membership.Service.Memberships'
// order, then the coupons by expiry and id (kind, ord); each kind fills its
// own columns.
const cardSQL = `SELECT 0 AS kind, 0::bigint AS ord,
	a.points_balance, a.growth_value, a.stored_principal, a.stored_bonus,
	a.pay_password_hash <> '' AS has_pay_password, a.tier_since,
	w.window_from, g.recent, g.in_window, l.expires_at AS lot_at, l.amounts AS lot_amounts,
	NULL::bigint AS pm_id, NULL::timestamptz AS pm_created_at, NULL::timestamptz AS pm_updated_at,
	NULL::bigint AS pm_plan_id, NULL::text AS pm_status, NULL::timestamptz AS pm_started_at,
	NULL::timestamptz AS pm_expires_at, NULL::boolean AS pm_auto_renew,
	NULL::bigint AS c_id, NULL::text AS c_code, NULL::bigint AS c_template_id, NULL::text AS c_status,
	NULL::timestamptz AS c_issued_at, NULL::timestamptz AS c_expires_at, NULL::text AS c_locked_order_ref,
	NULL::timestamptz AS c_locked_at, NULL::timestamptz AS c_redeemed_at, NULL::bigint AS c_order_id,
	NULL::text AS c_source, NULL::bigint AS c_discount, NULL::timestamptz AS c_expiring_notified_at,
	NULL::bigint AS c_issue_job_id, NULL::bigint AS c_total,
	(SELECT xmin::text::bigint FROM members WHERE id = $1::bigint) AS member_version
FROM (SELECT) one
LEFT JOIN accounts a ON a.member_id = $1::bigint
CROSS JOIN LATERAL (
	SELECT COALESCE(a.tier_since, $4::timestamptz) AT TIME ZONE $7::text AS start,
		$2::timestamptz AT TIME ZONE $7::text AS now_l
	OFFSET 0
) s
CROSS JOIN LATERAL (
	SELECT CASE $6::int
		WHEN 1 THEN (s.start + make_interval(months => $5::int)) AT TIME ZONE $7::text
		WHEN 2 THEN (
			SELECT min(c.at)
			FROM generate_series(k.k, k.k + 2) AS g(n),
				LATERAL (SELECT (s.start + make_interval(months => g.n * $5::int)) AT TIME ZONE $7::text AS at) c
			WHERE c.at > $2::timestamptz)
	END AS review_at
	FROM (SELECT GREATEST(1, ((extract(year FROM s.now_l) - extract(year FROM s.start)) * 12
		+ extract(month FROM s.now_l) - extract(month FROM s.start))::int / NULLIF($5::int, 0)) AS k) k
	OFFSET 0
) r
CROSS JOIN LATERAL (
	SELECT CASE WHEN $6::int = 0 THEN $3::timestamptz
		ELSE (GREATEST(r.review_at, $2::timestamptz) AT TIME ZONE $7::text - interval '12 months') AT TIME ZONE $7::text
	END AS window_from
	OFFSET 0
) w
CROSS JOIN LATERAL (
	SELECT COALESCE(sum(e.amount) FILTER (WHERE e.occurred_at > $3::timestamptz), 0)::bigint AS recent,
		COALESCE(sum(e.amount) FILTER (WHERE e.occurred_at > w.window_from), 0)::bigint AS in_window
	FROM growth_entries e
	WHERE e.member_id = $1::bigint AND e.occurred_at > LEAST($3::timestamptz, w.window_from)
		AND e.occurred_at <= $2::timestamptz
) g
CROSS JOIN LATERAL (
	SELECT array_agg((extract(epoch FROM x.expires_at) * 1000000)::bigint ORDER BY x.expires_at) AS expires_at,
		array_agg(x.amount ORDER BY x.expires_at) AS amounts
	FROM (SELECT expires_at, sum(remaining)::bigint AS amount FROM points_lots
		WHERE member_id = $1::bigint AND remaining > 0 AND expires_at > $2::timestamptz
		GROUP BY expires_at ORDER BY expires_at LIMIT $8::int) x
) l
UNION ALL
SELECT 1, row_number() OVER (ORDER BY pm.status, pm.expires_at DESC, pm.id),
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	pm.id, pm.created_at, pm.updated_at, pm.plan_id, pm.status, pm.started_at, pm.expires_at, pm.auto_renew,
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM paid_memberships pm
WHERE pm.member_id = $1::bigint
UNION ALL
SELECT 2, row_number() OVER (ORDER BY c.expires_at, c.id),
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	c.id, c.code, c.template_id, c.status, c.issued_at, c.expires_at, c.locked_order_ref, c.locked_at,
	c.redeemed_at, c.order_id, c.source, c.discount, c.expiring_notified_at, c.issue_job_id, c.total, NULL
FROM (
	SELECT coupons.*, count(*) OVER () AS total FROM coupons
	WHERE $9::int > 0 AND member_id = $1::bigint AND ($10::text IS NULL OR status = $10::text)
	ORDER BY expires_at, id LIMIT $9::int
) c
ORDER BY kind, ord`

// zoneName is loc's IANA name for PostgreSQL. time.Local has none: UTC
// stands in, and the window check sends such members the slow way.
func zoneName(loc *time.Location) string {
	if n := loc.String(); n != "Local" && n != "" {
		return n
	}
	return "UTC"
}

// cardRow is one row of cardSQL.
type cardRow struct {
	kind                             int
	ord                              int64
	points, growth, principal, bonus sql.NullInt64
	hasPayPassword                   sql.NullBool
	tierSince                        sql.NullTime
	windowFrom                       sql.NullTime
	recent, inWindow                 sql.NullInt64
	lotAt, lotAmount                 pq.Int64Array

	pmID, pmPlanID       sql.NullInt64
	pmCreated, pmUpdated sql.NullTime
	pmStatus             sql.NullString
	pmStarted, pmExpires sql.NullTime
	pmAutoRenew          sql.NullBool

	cID, cTemplateID, cOrderID, cDiscount, cIssueJobID, cTotal sql.NullInt64
	cCode, cStatus, cLockedOrderRef, cSource                   sql.NullString
	cIssued, cExpires, cLocked, cRedeemed, cNotified           sql.NullTime

	memberVersion sql.NullInt64
}

func (r *cardRow) dest() []any {
	return []any{&r.kind, &r.ord,
		&r.points, &r.growth, &r.principal, &r.bonus, &r.hasPayPassword, &r.tierSince,
		&r.windowFrom, &r.recent, &r.inWindow, &r.lotAt, &r.lotAmount,
		&r.pmID, &r.pmCreated, &r.pmUpdated, &r.pmPlanID, &r.pmStatus, &r.pmStarted, &r.pmExpires, &r.pmAutoRenew,
		&r.cID, &r.cCode, &r.cTemplateID, &r.cStatus, &r.cIssued, &r.cExpires, &r.cLockedOrderRef, &r.cLocked,
		&r.cRedeemed, &r.cOrderID, &r.cSource, &r.cDiscount, &r.cNotified, &r.cIssueJobID, &r.cTotal,
		&r.memberVersion}
}

func (r *cardRow) membership(memberID int) *ent.PaidMembership {
	return &ent.PaidMembership{
		ID: int(r.pmID.Int64), CreatedAt: r.pmCreated.Time, UpdatedAt: r.pmUpdated.Time,
		MemberID: memberID, PlanID: int(r.pmPlanID.Int64), Status: paidmembership.Status(r.pmStatus.String),
		StartedAt: r.pmStarted.Time, ExpiresAt: r.pmExpires.Time, AutoRenew: r.pmAutoRenew.Bool,
	}
}

// coupon is the row's coupon, every column set as ent would; it has no
// ent client, and connection loads its one edge (the template).
func (r *cardRow) coupon(memberID int) *ent.Coupon {
	c := &ent.Coupon{ID: int(r.cID.Int64), Code: r.cCode.String, TemplateID: int(r.cTemplateID.Int64),
		MemberID: memberID, Status: enum.CouponStatus(r.cStatus.String), IssuedAt: r.cIssued.Time,
		ExpiresAt: r.cExpires.Time, Source: r.cSource.String, Discount: r.cDiscount.Int64}
	if r.cLockedOrderRef.Valid {
		c.LockedOrderRef = &r.cLockedOrderRef.String
	}
	c.LockedAt = timePtr(r.cLocked)
	c.RedeemedAt = timePtr(r.cRedeemed)
	c.ExpiringNotifiedAt = timePtr(r.cNotified)
	c.OrderID = intPtr(r.cOrderID)
	c.IssueJobID = intPtr(r.cIssueJobID)
	return c
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	return &t.Time
}

func intPtr(n sql.NullInt64) *int {
	if !n.Valid {
		return nil
	}
	v := int(n.Int64)
	return &v
}

// Read reads m's card, with the first coupons of page when page.First > 0:
// one statement (shared with the cards read at the same time, batch.go),
// plus the plans of its memberships, the tier ladder and the coupons'
// templates from their caches. m is the member as the operation loaded it
// (its tier and registration decide the windows).
func (r *Reader) Read(ctx context.Context, m *ent.Member, page CouponPage) (*Card, error) {
	plan, err := r.tiers.PlanStatus(ctx, r.db, m)
	if err != nil {
		return nil, err
	}
	every, recurring, held := plan.Review()
	mode := reviewNone
	switch {
	case held && recurring:
		mode = reviewRecurring
	case held:
		mode = reviewOnce
	}
	var limit int
	var status *string
	if page.First > 0 {
		limit = page.First + 1
		if page.Status != nil {
			status = (*string)(page.Status)
		}
	}
	rows, err := r.cardRows(ctx, cardArgs{member: m.ID, now: plan.Now(), promotionFrom: plan.PromotionFrom(),
		registered: m.RegisteredAt, every: every, mode: mode, zone: zoneName(plan.Zone()), limit: limit, status: status})
	if err != nil {
		return nil, fmt.Errorf("reading the card of member %d: %w", m.ID, err)
	}
	c := &Card{Member: m, asOf: plan.Now()}
	var (
		first   *cardRow
		coupons []*ent.Coupon
		total   int64
	)
	for _, row := range rows {
		switch row.kind {
		case rowCard:
			first = row
		case rowMembership:
			c.Memberships = append(c.Memberships, row.membership(m.ID))
		case rowCoupon:
			coupons = append(coupons, row.coupon(m.ID))
			total = row.cTotal.Int64
		}
	}
	if first == nil {
		return nil, fmt.Errorf("reading the card of member %d: no card row", m.ID)
	}

	c.MemberVersion = first.memberVersion.Int64
	c.Balances = Balances{Points: first.points.Int64, Growth: first.growth.Int64, StoredPrincipal: first.principal.Int64,
		StoredBonus: first.bonus.Int64, HasPayPassword: first.hasPayPassword.Bool}
	var tierSince *time.Time
	if first.tierSince.Valid {
		tierSince = &first.tierSince.Time
	}
	if first.windowFrom.Valid && first.windowFrom.Time.Equal(plan.WindowFrom(tierSince)) {
		c.Status = plan.Finish(tierSince, first.recent.Int64, first.inWindow.Int64)
	} else {
		// StatusOf reads the account's tier_since only.
		c.ruleWindow = true
		if c.Status, err = r.tiers.StatusOf(ctx, r.db, m, &ent.Account{MemberID: m.ID, TierSince: tierSince}); err != nil {
			return nil, err
		}
	}
	if len(first.lotAt) != len(first.lotAmount) {
		return nil, fmt.Errorf("reading the card of member %d: %d expiry instants, %d amounts", m.ID, len(first.lotAt), len(first.lotAmount))
	}
	c.expiring = make([]ledger.Expiring, len(first.lotAt))
	for i, at := range first.lotAt {
		c.expiring[i] = ledger.Expiring{Amount: first.lotAmount[i], ExpiresAt: time.UnixMicro(at).UTC()}
	}
	for _, pm := range c.Memberships {
		if pm.Edges.Plan, err = r.memberships.DisplayPlan(ctx, pm.PlanID); err != nil {
			return nil, err
		}
	}
	if page.First > 0 {
		if c.coupons, err = r.connection(ctx, coupons, int(total), page.First); err != nil {
			return nil, err
		}
		c.page = page
	}
	return c, nil
}
