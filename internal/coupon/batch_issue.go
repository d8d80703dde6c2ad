package coupon

import (
	"context"
	"encoding/json"
	"fmt"

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

// takeStockN takes up to $2 coupons of stock in one statement and answers
// how many it took: concurrent issuers queue on the template's row, as
// with takeStock, so stock is never oversold.
const takeStockN = `WITH old AS (SELECT issued_count FROM coupon_templates WHERE id = $1 FOR UPDATE)
UPDATE coupon_templates t
SET issued_count = t.issued_count + GREATEST(0, LEAST($2, t.total_stock - t.issued_count))
FROM old WHERE t.id = $1
RETURNING t.issued_count - old.issued_count`

// insertCoupons writes coupons from parallel arrays; a code already taken
// is skipped (ON CONFLICT DO NOTHING keeps tx usable) and drawn again.
const insertCoupons = `INSERT INTO coupons (code, template_id, member_id, status, issued_at, expires_at, source, discount)
SELECT x.code, $2, x.member_id, 'AVAILABLE', $3, $4, $5, 0
FROM unnest($1::text[], $6::bigint[]) AS x(code, member_id)
ON CONFLICT (code) DO NOTHING
RETURNING id, code, member_id`

// emitIssued writes what events.Emit writes for each coupon, set-based:
// the member's account takes the next event_seq, the COUPON_ISSUED event
// takes that seq, and an in-app notification points at the event.
const emitIssued = `WITH x AS (
	SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS x(member_id, seq, payload)
), a AS (
	UPDATE accounts SET event_seq = x.seq FROM x WHERE accounts.member_id = x.member_id
), e AS (
	INSERT INTO member_events (member_id, seq, type, payload, occurred_at)
	SELECT x.member_id, x.seq, $4, x.payload::jsonb, $5 FROM x
	RETURNING id, member_id
)
INSERT INTO notifications (member_id, title, body, event_id, created_at)
SELECT e.member_id, $6, $7, e.id, $5 FROM e`

// IssueBatchInTx issues one coupon of templateID to the member of each of
// accts, set-based, inside the caller's transaction: what IssueInTx does
// for one member, in a handful of statements for all of them (campaigns
// issuing to large audiences). accts must belong to distinct members and
// be locked by the caller in tx (account.Lock, or SELECT … FOR UPDATE in
// ascending member id); their EventSeq is advanced in step with the rows,
// so that later events.Emit calls in tx continue the sequence. The answer
// has one Issued per account, in the order of accts.
//
//   - An unknown template is ErrTemplateNotFound (the only refusal that is
//     an error: nothing was written). A template whose window has ended
//     refuses every member with ErrEnded.
//   - Per-member limit: the members' coupons of the template in any status
//     but VOID, counted under the account locks; a member at the limit is
//     refused with ErrLimitExceeded.
//   - Stock: the members left are served in the order of accts as far as
//     the stock goes, taken with one conditional UPDATE before the coupons
//     are written (so the template's row stays locked until tx ends, as an
//     ISSUE_COUPONS batch holds it); the rest are refused with
//     ErrOutOfStock.
//   - Each coupon has a fresh random code (a code already taken is drawn
//     again), source as given, and a COUPON_ISSUED event with the same
//     payload and in-app notification as IssueInTx writes; the event bus
//     is woken for them after the commit (events.WakeAfterCommit).
func (s *Service) IssueBatchInTx(ctx context.Context, tx *ent.Tx, accts []*ent.Account, templateID int, source string) ([]Issued, error) {
	t, err := tx.CouponTemplate.Get(ctx, templateID)
	if ent.IsNotFound(err) {
		return nil, ErrTemplateNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading coupon template: %w", err)
	}
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

	ids := make([]int64, len(accts))
	for i, a := range accts {
		ids[i] = int64(a.MemberID)
	}
	held, err := heldCounts(ctx, tx, t.ID, ids)
	if err != nil {
		return nil, err
	}
	var want []int // indexes into accts of the members under the limit
	for i, a := range accts {
		if held[a.MemberID] >= t.PerMemberLimit {
			out[i].Err = ErrLimitExceeded
			continue
		}
		want = append(want, i)
	}
	if len(want) == 0 {
		return out, nil
	}
	got, err := scanInt(ctx, tx, takeStockN, t.ID, len(want))
	if err != nil {
		return nil, fmt.Errorf("taking coupon stock: %w", err)
	}
	for _, i := range want[got:] {
		out[i].Err = ErrOutOfStock
	}
	want = want[:got]
	t.IssuedCount += got

	// Codes: draw, write, and draw again for the members whose code was
	// taken meanwhile.
	byMember := make(map[int]int, len(want)) // member id → index into accts
	for _, i := range want {
		byMember[accts[i].MemberID] = i
	}
	todo := want
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == maxCodeAttempts {
			return nil, fmt.Errorf("no free coupon codes after %d attempts", maxCodeAttempts)
		}
		codes, members := make([]string, len(todo)), make([]int64, len(todo))
		for k, i := range todo {
			if codes[k], err = s.newCode(); err != nil {
				return nil, err
			}
			members[k] = int64(accts[i].MemberID)
		}
		rows, err := tx.QueryContext(ctx, insertCoupons, pq.Array(codes), t.ID, now, expires, source, pq.Array(members))
		if err != nil {
			return nil, fmt.Errorf("writing coupons: %w", err)
		}
		for rows.Next() {
			var (
				id, member int
				code       string
			)
			if err := rows.Scan(&id, &code, &member); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reading coupons written: %w", err)
			}
			out[byMember[member]].Coupon = &ent.Coupon{ID: id, Code: code, TemplateID: t.ID, MemberID: member,
				Status: enum.CouponAvailable, IssuedAt: now, ExpiresAt: expires, Source: source}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("writing coupons: %w", err)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("writing coupons: %w", err)
		}
		next := todo[:0:0]
		for _, i := range todo {
			if out[i].Coupon == nil {
				next = append(next, i)
			}
		}
		todo = next
	}

	members, seqs, payloads := make([]int64, len(want)), make([]int64, len(want)), make([]string, len(want))
	woken := make([]int, len(want))
	for k, i := range want {
		c := out[i].Coupon
		b, err := json.Marshal(s.payload(c, t))
		if err != nil {
			return nil, fmt.Errorf("encoding event payload: %w", err)
		}
		members[k], seqs[k], payloads[k] = int64(c.MemberID), accts[i].EventSeq+1, string(b)
		woken[k] = c.MemberID
	}
	body := fmt.Sprintf("您获得了一张优惠券「%s」，有效期至%s。", t.Title, s.showTime(expires))
	if _, err := tx.ExecContext(ctx, emitIssued, pq.Array(members), pq.Array(seqs), pq.Array(payloads),
		string(events.CouponIssued), now, "获得优惠券", body); err != nil {
		return nil, fmt.Errorf("emitting coupons issued: %w", err)
	}
	events.WakeAfterCommit(ctx, tx, woken...)
	for _, i := range want {
		accts[i].EventSeq++
		out[i].Coupon.Edges.Template = t
	}
	return out, nil
}

// heldCounts counts, per member of ids, the coupons of the template that
// count against its per-member limit (every status but VOID).
func heldCounts(ctx context.Context, tx *ent.Tx, templateID int, ids []int64) (map[int]int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT member_id, count(*) FROM coupons
		WHERE template_id = $1 AND member_id = ANY($2) AND status <> 'VOID' GROUP BY member_id`,
		templateID, pq.Array(ids))
	if err != nil {
		return nil, fmt.Errorf("counting the members' coupons: %w", err)
	}
	defer rows.Close()
	held := make(map[int]int)
	for rows.Next() {
		var member, n int
		if err := rows.Scan(&member, &n); err != nil {
			return nil, fmt.Errorf("counting the members' coupons: %w", err)
		}
		held[member] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting the members' coupons: %w", err)
	}
	return held, nil
}

// scanInt runs a query answering one integer.
func scanInt(ctx context.Context, tx *ent.Tx, query string, args ...any) (int, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("no row")
	}
	var n int
	if err := rows.Scan(&n); err != nil {
		return 0, err
	}
	return n, rows.Close()
}
