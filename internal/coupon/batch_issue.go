package coupon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/events"
)

// Issued is what IssueBatchInTx did for one account: the coupon, or why
// the member got none (ErrLimitExceeded, ErrOutOfStock, ErrEnded).
type Issued struct {
	// Coupon is the coupon issued (not bound to a client: read its
	// fields), nil when Err is set.
	Coupon *ent.Coupon
	Err    error
}

// Issuing coupons set-based. Both statements take parallel arrays of the
// members to serve, in serving order: $2 fresh codes, $3 member ids, $4 each
// member's next event_seq. For each coupon written they write the coupon,
// the account's event_seq, the COUPON_ISSUED event (the payload IssueInTx
// writes, built in SQL since the coupon id is only known there) and its
// in-app notification, as events.Emit writes them. A code already taken is
// skipped (ON CONFLICT DO NOTHING keeps tx usable): that member's row comes
// back without a coupon, and is written again with a fresh code by
// issueWithoutStock. The answer is one row per member, in order: member id,
// whether the member is at the per-member limit, the stock taken and the
// template's issued_count after it (NULL when the row was not locked), and
// the coupon written (id, code), NULL where none.
//
// issueWithStock decides and writes in one statement, so that the
// template's row, which every claimant of a hot template queues on, is
// locked from this statement to the end of the caller's transaction and
// not across round trips before it:
//
//   - x0.held: each member's coupons of the template in any status but
//     VOID, counted up to $13, the per-member limit (a member holding
//     many coupons of a template with a high limit costs no more than
//     the limit's worth of rows). The caller holds the accounts
//     locked since an earlier statement, so this statement's snapshot sees
//     every coupon of these members that any other transaction issued. It
//     is a subquery per member, equality on both columns of the index
//     (template_id, member_id): the plan PostgreSQL caches for it looks
//     each member up in that index even when it was made while the table
//     was small (member_id = ANY($3) there was cached as a scan of all the
//     template's coupons, and a hot template has the most of them).
//     A limit above the template's issued_count, read in the same
//     snapshot, cannot bind, and then nothing is counted: every coupon
//     took its stock in the transaction that wrote it and issued_count
//     never goes down, so no member holds more coupons of the template
//     than issued_count. (A limit of thousands, "no limit" in practice,
//     otherwise cost a visit to every coupon the member held of the
//     template, on every claim.)
//   - took: the stock, up to one coupon per member under the limit, taken
//     with one conditional UPDATE: concurrent issuers queue on the row
//     (old locks it first and reads the count as the lock holder left it),
//     each seeing the count the previous one committed, so stock is never
//     oversold. With no member under the limit the row is not touched.
//   - x: the members under the limit, in order, as far as the stock went.
//
// issueStockLater is issueWithStock without the stock: every member under
// the limit gets a coupon, and the caller takes the stock for all of them
// afterwards, with takeStockLast as the last statement before COMMIT, so
// that the template's row is held for that statement and the commit only
// (hot templates whose stock is far from running out: a batch the stock no
// longer covers fails and is served again with issueWithStock).
const (
	issueHeld = `WITH x0 AS (
	SELECT x.*, CASE WHEN $13::bigint > (SELECT issued_count FROM coupon_templates WHERE id = $1::bigint) THEN 0
		ELSE (
			SELECT count(*) FROM (
				SELECT FROM coupons c
				WHERE c.template_id = $1::bigint AND c.member_id = x.member_id AND c.status <> 'VOID'
				LIMIT $13::bigint
			) h
		) END AS held
	FROM unnest($2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS x(code, member_id, seq, ord)
),`

	issueWithStock = issueHeld + ` under AS (
	SELECT x0.*, row_number() OVER (ORDER BY x0.ord) AS rank FROM x0 WHERE x0.held < $13::bigint
), old AS (
	SELECT issued_count FROM coupon_templates
	WHERE id = $1::bigint AND EXISTS (SELECT FROM under)
	FOR UPDATE
), took AS (
	UPDATE coupon_templates t
	SET issued_count = t.issued_count + LEAST((SELECT count(*) FROM under), t.total_stock - t.issued_count)
	FROM old WHERE t.id = $1::bigint AND t.issued_count < t.total_stock
	RETURNING t.issued_count - old.issued_count AS n, t.issued_count AS total
), x AS (
	SELECT code, member_id, seq, ord FROM under WHERE rank <= (SELECT n FROM took)
),` + issueWrites + `
SELECT x0.member_id, x0.held >= $13::bigint, (SELECT n FROM took),
	COALESCE((SELECT total FROM took), (SELECT issued_count FROM old)), w.id, w.code
FROM x0 LEFT JOIN w ON w.member_id = x0.member_id
ORDER BY x0.ord`

	issueStockLater = issueHeld + ` x AS (
	SELECT code, member_id, seq, ord FROM x0 WHERE x0.held < $13::bigint
),` + issueWrites + `
SELECT x0.member_id, x0.held >= $13::bigint, NULL::bigint, NULL::bigint, w.id, w.code
FROM x0 LEFT JOIN w ON w.member_id = x0.member_id
ORDER BY x0.ord`

	// issueWithoutStock writes a coupon for every member of the arrays,
	// whose stock was taken already.
	issueWithoutStock = `WITH x AS (
	SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY AS x(code, member_id, seq, ord)
),` + issueWrites + `
SELECT x.member_id, false, NULL::bigint, NULL::bigint, w.id, w.code
FROM x LEFT JOIN w ON w.member_id = x.member_id
ORDER BY x.ord`

	issueWrites = ` c AS (
	INSERT INTO coupons (code, template_id, member_id, status, issued_at, expires_at, source, discount)
	SELECT x.code, $1::bigint, x.member_id, 'AVAILABLE', $5::timestamptz, $6::timestamptz, $7::text, 0 FROM x ORDER BY x.ord
	ON CONFLICT (code) DO NOTHING
	RETURNING id, code, member_id
), w AS (
	SELECT c.id, c.code, c.member_id, x.seq FROM c JOIN x ON x.member_id = c.member_id
), a AS (
	UPDATE accounts SET event_seq = w.seq FROM w WHERE accounts.member_id = w.member_id
), e AS (
	INSERT INTO member_events (member_id, seq, type, payload, occurred_at)
	SELECT w.member_id, w.seq, $8::text,
		jsonb_build_object('couponId', w.id, 'templateId', $1::bigint, 'title', $9::text, 'expiresAt', $10::text),
		$5::timestamptz
	FROM w
	RETURNING id, member_id
), n AS (
	INSERT INTO notifications (member_id, title, body, event_id, created_at)
	SELECT e.member_id, $11::text, $12::text, e.id, $5::timestamptz FROM e
)`
)

// IssueBatchInTx issues one coupon of templateID to the member of each of
// accts, set-based, inside the caller's transaction: what IssueInTx does
// for one member, in one statement for all of them (campaigns issuing to
// large audiences, batches of claims). accts must belong to distinct
// members and be locked by the caller in tx, in an earlier statement
// (account.LockMany, or SELECT … FOR UPDATE in ascending member id); their
// EventSeq is advanced in step with the rows, so that later events.Emit
// calls in tx continue the sequence. The answer has one Issued per account,
// in the order of accts.
//
//   - An unknown template is ErrTemplateNotFound (the only refusal that is
//     an error: nothing was written). A template whose window has ended
//     refuses every member with ErrEnded.
//   - Per-member limit: the members' coupons of the template in any status
//     but VOID, counted under the account locks; a member at the limit is
//     refused with ErrLimitExceeded.
//   - Stock: the members left are served in the order of accts as far as
//     the stock goes, taken with one conditional UPDATE inside the
//     statement that writes the coupons, events and notifications (so the
//     template's row is locked from that statement until tx ends, as an
//     ISSUE_COUPONS batch holds it, and not before); the rest are refused
//     with ErrOutOfStock.
//   - Each coupon has a fresh random code (a code already taken is drawn
//     again, in a second statement), source as given, and a COUPON_ISSUED
//     event with the same payload and in-app notification as IssueInTx
//     writes; the event bus is woken for them after the commit
//     (events.WakeAfterCommit).
//
// The coupons answered are not bound to a client (read their fields); their
// Template edge is loaded.
func (s *Service) IssueBatchInTx(ctx context.Context, tx *ent.Tx, accts []*ent.Account, templateID int, source string) ([]Issued, error) {
	t, err := tx.CouponTemplate.Get(ctx, templateID)
	if ent.IsNotFound(err) {
		return nil, ErrTemplateNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading coupon template: %w", err)
	}
	return s.issueBatch(ctx, tx, accts, t, source, stockFirst)
}

// stockMode is when issueBatch takes the stock.
type stockMode int

const (
	stockFirst stockMode = iota // in the statement that writes (issueWithStock)
	stockLater                  // the caller takes it with takeStockLast
	stockTaken                  // already taken: codes drawn again (issueWithoutStock)
)

// errStockShort is takeStockLast finding less stock than the batch it was
// asked for took coupons: the transaction must be rolled back.
var errStockShort = errors.New("coupon stock short of an optimistic batch")

// takeStockLast takes n coupons of t's stock for coupons written with
// stockLater, as the last statement before COMMIT, or fails with
// errStockShort; t.IssuedCount is set to what it left.
func takeStockLast(ctx context.Context, tx *ent.Tx, t *ent.CouponTemplate, n int) error {
	if n == 0 {
		return nil
	}
	ok, err := takeExact(ctx, tx, t, n)
	if err == nil && !ok {
		return errStockShort
	}
	return err
}

// issueBatch is IssueBatchInTx for a template the caller has loaded (its
// stock is taken by the conditional UPDATE, never from t; t.IssuedCount is
// set to what the UPDATE left). With stockLater it takes no stock: every
// member under the limit gets a coupon, and the caller must take the stock
// for them with takeStockLast before committing.
func (s *Service) issueBatch(ctx context.Context, tx *ent.Tx, accts []*ent.Account, t *ent.CouponTemplate, source string, mode stockMode) ([]Issued, error) {
	out := make([]Issued, len(accts))
	if len(accts) == 0 {
		return out, nil
	}
	now := s.now().UTC()
	if t.ValidTo != nil && !now.Before(*t.ValidTo) {
		for i := range out {
			out[i].Err = ErrEnded
		}
		return out, nil
	}
	expires, err := s.expiresAt(t, now)
	if err != nil {
		return nil, err
	}
	w := issueWrite{s: s, tx: tx, t: t, now: now, expires: expires, source: source, accts: accts, out: out,
		body: fmt.Sprintf("您获得了一张优惠券「%s」，有效期至%s。", t.Title, s.showTime(expires))}

	all := make([]int, len(accts))
	for i := range all {
		all[i] = i
	}
	rows, err := w.write(ctx, mode, all)
	if err != nil {
		return nil, err
	}
	var served []int // indexes into accts of the members who took stock
	under := 0
	for i, r := range rows {
		switch {
		case r.limited:
			out[i].Err = ErrLimitExceeded
			continue
		case mode == stockFirst && under >= r.took:
			out[i].Err = ErrOutOfStock
		default:
			served = append(served, i)
		}
		under++
	}
	if len(rows) > 0 && rows[0].total > 0 {
		t.IssuedCount = rows[0].total
	}
	// Members whose code was taken meanwhile hold their stock: they are
	// written again with fresh codes.
	for attempt := 1; ; attempt++ {
		var todo []int
		for _, i := range served {
			if out[i].Coupon == nil {
				todo = append(todo, i)
			}
		}
		if len(todo) == 0 {
			break
		}
		if attempt == maxCodeAttempts {
			return nil, fmt.Errorf("no free coupon codes after %d attempts", maxCodeAttempts)
		}
		if _, err := w.write(ctx, stockTaken, todo); err != nil {
			return nil, err
		}
	}

	woken := make([]int, len(served))
	for k, i := range served {
		accts[i].EventSeq++
		out[i].Coupon.Edges.Template = t
		woken[k] = accts[i].MemberID
	}
	events.WakeAfterCommit(ctx, tx, woken...)
	return out, nil
}

// issueWrite is what one issueBatch writes with: the template, the times
// and where the coupons written go.
type issueWrite struct {
	s            *Service
	tx           *ent.Tx
	t            *ent.CouponTemplate
	now, expires time.Time
	source, body string
	accts        []*ent.Account
	out          []Issued
}

// issueRow is what the statement answered for one member.
type issueRow struct {
	limited     bool
	took, total int // the stock taken and what it left (first statement)
}

// write runs the statement of mode (issueWithStock, issueStockLater or
// issueWithoutStock) for the members of accts at idx, in that order, with
// fresh codes; it sets out[i].Coupon for each coupon written and answers a
// row per member of idx.
func (w *issueWrite) write(ctx context.Context, mode stockMode, idx []int) ([]issueRow, error) {
	codes, members, seqs := make([]string, len(idx)), make([]int64, len(idx)), make([]int64, len(idx))
	for k, i := range idx {
		code, err := w.s.newCode()
		if err != nil {
			return nil, err
		}
		codes[k], members[k], seqs[k] = code, int64(w.accts[i].MemberID), w.accts[i].EventSeq+1
	}
	query, args := issueWithoutStock, []any{w.t.ID, pq.Array(codes), pq.Array(members), pq.Array(seqs),
		w.now, w.expires, w.source, string(events.CouponIssued), w.t.Title,
		w.expires.In(w.s.zone).Format(time.RFC3339), "获得优惠券", w.body}
	switch mode {
	case stockFirst:
		query, args = issueWithStock, append(args, w.t.PerMemberLimit)
	case stockLater:
		query, args = issueStockLater, append(args, w.t.PerMemberLimit)
	}
	rows, err := w.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("issuing coupons: %w", err)
	}
	defer rows.Close()
	out := make([]issueRow, 0, len(idx))
	for rows.Next() {
		var (
			member                int
			limited               bool
			took, total, couponID sql.NullInt64
			code                  sql.NullString
		)
		if err := rows.Scan(&member, &limited, &took, &total, &couponID, &code); err != nil {
			return nil, fmt.Errorf("reading coupons issued: %w", err)
		}
		k := len(out)
		if k == len(idx) || member != w.accts[idx[k]].MemberID {
			return nil, fmt.Errorf("issuing coupons: row %d is of member %d, not the one asked for", k, member)
		}
		out = append(out, issueRow{limited: limited, took: int(took.Int64), total: int(total.Int64)})
		if couponID.Valid {
			w.out[idx[k]].Coupon = &ent.Coupon{ID: int(couponID.Int64), Code: code.String, TemplateID: w.t.ID,
				MemberID: member, Status: enum.CouponAvailable, IssuedAt: w.now, ExpiresAt: w.expires,
				Source: w.source}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("issuing coupons: %w", err)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("issuing coupons: %w", err)
	}
	if len(out) != len(idx) {
		return nil, fmt.Errorf("issuing coupons: %d rows for %d members", len(out), len(idx))
	}
	return out, nil
}
