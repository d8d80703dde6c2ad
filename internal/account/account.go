// Package account owns the member's account row: the one row every change
// of a member's balances, tier or events takes a lock on, so that changes
// of one member are serialized while different members proceed in
// parallel.
package account

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"

	"entgo.io/ent/dialect/sql"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	entaccount "github.com/onemember/onemember/ent/account"
	"github.com/onemember/onemember/internal/platform/fault"
)

// ErrMemberNotFound is a member id that does not exist.
var ErrMemberNotFound = fault.New(fault.NotFound, "member not found")

// Lock returns the member's account locked FOR UPDATE in tx, creating it
// on first use. Callers that lock two accounts (merges) lock the lower
// member id first, so that two merges cannot deadlock.
func Lock(ctx context.Context, tx *ent.Tx, memberID int) (*ent.Account, error) {
	get := func() (*ent.Account, error) {
		return tx.Account.Query().Where(entaccount.MemberID(memberID)).ForUpdate().Only(ctx)
	}
	a, err := get()
	if err == nil {
		return a, nil
	}
	if !ent.IsNotFound(err) {
		return nil, fmt.Errorf("locking account of member %d: %w", memberID, err)
	}
	// ON CONFLICT DO NOTHING returns no id when a concurrent transaction
	// created the row first (ent/ent#1821): that is success too.
	err = tx.Account.Create().SetMemberID(memberID).
		OnConflict(sql.ConflictColumns(entaccount.FieldMemberID)).DoNothing().
		Exec(ctx)
	switch {
	case ent.IsConstraintError(err): // no such member
		return nil, ErrMemberNotFound
	case err != nil && !errors.Is(err, stdsql.ErrNoRows):
		return nil, fmt.Errorf("creating account of member %d: %w", memberID, err)
	}
	if a, err = get(); err != nil {
		return nil, fmt.Errorf("locking new account of member %d: %w", memberID, err)
	}
	return a, nil
}

// LockMany is Lock for many members at once (campaign batches): it creates
// the missing accounts of the members that exist, then locks every one in
// ascending member id (so that batches cannot deadlock with each other or
// with Lock's callers, who lock the lower id first), and answers them by
// member id. A member id that does not exist has no entry.
func LockMany(ctx context.Context, tx *ent.Tx, memberIDs []int) (map[int]*ent.Account, error) {
	ids := make([]int64, len(memberIDs))
	for i, m := range memberIDs {
		ids[i] = int64(m)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (created_at, updated_at, member_id)
		SELECT now(), now(), id FROM members WHERE id = ANY($1) ORDER BY id
		ON CONFLICT (member_id) DO NOTHING`, pq.Array(ids)); err != nil {
		return nil, fmt.Errorf("creating accounts: %w", err)
	}
	rows, err := tx.Account.Query().Where(entaccount.MemberIDIn(memberIDs...)).
		Order(entaccount.ByMemberID()).ForUpdate().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("locking accounts: %w", err)
	}
	out := make(map[int]*ent.Account, len(rows))
	for _, a := range rows {
		out[a.MemberID] = a
	}
	return out, nil
}

// Get returns the member's account without locking (zero balances when
// the member never had one).
func Get(ctx context.Context, db *ent.Client, memberID int) (*ent.Account, error) {
	a, err := db.Account.Query().Where(entaccount.MemberID(memberID)).Only(ctx)
	if ent.IsNotFound(err) {
		return &ent.Account{MemberID: memberID}, nil
	}
	return a, err
}
