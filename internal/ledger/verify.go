package ledger

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
)

// maxProblemsPerCheck bounds what one check lists: a systematic fault
// shows in the first lines, and a report of a million lines helps nobody.
const maxProblemsPerCheck = 100

// Report is the outcome of Verify.
type Report struct {
	Accounts int      // accounts checked
	Problems []string // empty when every rule holds
}

// check is one set-based query whose every row is a problem; describe
// renders a row.
type check struct {
	name     string
	query    string
	describe func(scan func(...any) error) (string, error)
}

// Verify checks the ledger rules over the whole database (server
// verify-ledgers):
//   - every account balance equals the sum of its entries (points, growth,
//     stored principal, stored bonus), and no balance but points is negative;
//   - every entry's balance_after is the running sum of its member's entries
//     (in id order, which is commit order under the account lock) and every
//     stored-value amount is principal plus bonus;
//   - no entry or lot holding points belongs to a member without an account;
//   - every lot's remaining equals its amount less its allocations and lies
//     in [0, amount];
//   - per member, the lots hold exactly max(points balance, 0).
//
// Each rule is one GROUP BY or window query, not a loop per member, and all
// of them read one snapshot (a read-only REPEATABLE READ transaction), so
// Verify can run on a live database of millions of members without
// reporting writes in progress.
func Verify(ctx context.Context, db *ent.Client) (rep Report, err error) {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: stdsql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return Report{}, fmt.Errorf("beginning snapshot: %w", err)
	}
	// Read-only: rolling back releases the snapshot and loses nothing.
	defer func() {
		if rerr := tx.Rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("ending snapshot: %w", rerr))
		}
	}()
	if err := scanOne(ctx, tx, `SELECT count(*) FROM accounts`, &rep.Accounts); err != nil {
		return Report{}, fmt.Errorf("counting accounts: %w", err)
	}
	for _, c := range checks() {
		problems, err := runCheck(ctx, tx, c)
		if err != nil {
			return Report{}, fmt.Errorf("checking %s: %w", c.name, err)
		}
		rep.Problems = append(rep.Problems, problems...)
	}
	return rep, nil
}

func checks() []check {
	return []check{
		{
			name: "account balances",
			query: `
WITH p AS (SELECT member_id, SUM(amount) AS s FROM points_entries GROUP BY member_id),
     g AS (SELECT member_id, SUM(amount) AS s FROM growth_entries GROUP BY member_id),
     v AS (SELECT member_id, SUM(principal_amount) AS p, SUM(bonus_amount) AS b FROM stored_value_entries GROUP BY member_id),
     l AS (SELECT member_id, SUM(remaining) AS r FROM points_lots GROUP BY member_id)
SELECT a.member_id,
       a.points_balance, COALESCE(p.s, 0)::bigint,
       a.growth_value, COALESCE(g.s, 0)::bigint,
       a.stored_principal, COALESCE(v.p, 0)::bigint,
       a.stored_bonus, COALESCE(v.b, 0)::bigint,
       COALESCE(l.r, 0)::bigint
FROM accounts a
LEFT JOIN p ON p.member_id = a.member_id
LEFT JOIN g ON g.member_id = a.member_id
LEFT JOIN v ON v.member_id = a.member_id
LEFT JOIN l ON l.member_id = a.member_id
WHERE a.points_balance <> COALESCE(p.s, 0)
   OR a.growth_value <> COALESCE(g.s, 0) OR a.growth_value < 0
   OR a.stored_principal <> COALESCE(v.p, 0) OR a.stored_principal < 0
   OR a.stored_bonus <> COALESCE(v.b, 0) OR a.stored_bonus < 0
   OR COALESCE(l.r, 0) <> GREATEST(a.points_balance, 0)
ORDER BY a.member_id
LIMIT $1`,
			describe: func(scan func(...any) error) (string, error) {
				var member, points, pointsSum, growth, growthSum, principal, principalSum, bonus, bonusSum, lots int64
				if err := scan(&member, &points, &pointsSum, &growth, &growthSum, &principal, &principalSum, &bonus, &bonusSum, &lots); err != nil {
					return "", err
				}
				return fmt.Sprintf("member %d: points_balance %d (entries %d, lots hold %d), growth_value %d (entries %d), stored_principal %d (entries %d), stored_bonus %d (entries %d)",
					member, points, pointsSum, lots, growth, growthSum, principal, principalSum, bonus, bonusSum), nil
			},
		},
		runningCheck("points_entries", "false"),
		runningCheck("growth_entries", "false"),
		runningCheck("stored_value_entries", "amount <> principal_amount + bonus_amount"),
		{
			name: "rows without an account",
			query: `
SELECT member_id, what FROM (
    SELECT DISTINCT member_id, 'points entries' AS what FROM points_entries
    UNION SELECT DISTINCT member_id, 'growth entries' FROM growth_entries
    UNION SELECT DISTINCT member_id, 'stored-value entries' FROM stored_value_entries
    UNION SELECT DISTINCT member_id, 'lots holding points' FROM points_lots WHERE remaining > 0
) x
WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.member_id = x.member_id)
ORDER BY member_id, what
LIMIT $1`,
			describe: func(scan func(...any) error) (string, error) {
				var member int64
				var what string
				if err := scan(&member, &what); err != nil {
					return "", err
				}
				return fmt.Sprintf("member %d has %s but no account", member, what), nil
			},
		},
		{
			name: "points lots",
			query: `
SELECT l.id, l.member_id, l.amount, l.remaining, COALESCE(s.t, 0)::bigint
FROM points_lots l
LEFT JOIN (SELECT lot_id, SUM(amount) AS t FROM points_allocations GROUP BY lot_id) s ON s.lot_id = l.id
WHERE l.remaining <> l.amount - COALESCE(s.t, 0) OR l.remaining < 0 OR l.remaining > l.amount
ORDER BY l.id
LIMIT $1`,
			describe: func(scan func(...any) error) (string, error) {
				var lot, member, amount, remaining, allocated int64
				if err := scan(&lot, &member, &amount, &remaining, &allocated); err != nil {
					return "", err
				}
				return fmt.Sprintf("points lot %d of member %d: amount %d, allocated %d, remaining %d (want %d, within [0, %d])",
					lot, member, amount, allocated, remaining, amount-allocated, amount), nil
			},
		},
	}
}

// runningCheck finds entries of table whose balance_after is not the
// running sum of their member's entries, or for which bad holds.
func runningCheck(table, bad string) check {
	return check{
		name: table + " running balances",
		query: `
SELECT id, member_id, amount, balance_after, running::bigint FROM (
    SELECT id, member_id, amount, balance_after, ` + bad + ` AS bad,
           SUM(amount) OVER (PARTITION BY member_id ORDER BY id) AS running
    FROM ` + table + `
) x
WHERE balance_after <> running OR bad
ORDER BY id
LIMIT $1`,
		describe: func(scan func(...any) error) (string, error) {
			var id, member, amount, after, running int64
			if err := scan(&id, &member, &amount, &after, &running); err != nil {
				return "", err
			}
			return fmt.Sprintf("%s %d of member %d: amount %d, balance_after %d, running sum %d",
				table, id, member, amount, after, running), nil
		},
	}
}

func runCheck(ctx context.Context, tx *ent.Tx, c check) (_ []string, err error) {
	rows, err := tx.QueryContext(ctx, c.query, maxProblemsPerCheck+1)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, rows.Close()) }()
	var out []string
	for rows.Next() {
		if len(out) == maxProblemsPerCheck {
			out = append(out, fmt.Sprintf("%s: more problems not listed", c.name))
			break
		}
		p, err := c.describe(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func scanOne(ctx context.Context, tx *ent.Tx, query string, dest any) (err error) {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, rows.Close()) }()
	if !rows.Next() {
		return errors.Join(rows.Err(), stdsql.ErrNoRows)
	}
	return rows.Scan(dest)
}
