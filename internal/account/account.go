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

// Get returns the member's account without locking (zero balances when
// the member never had one).
func Get(ctx context.Context, db *ent.Client, memberID int) (*ent.Account, error) {
	a, err := db.Account.Query().Where(entaccount.MemberID(memberID)).Only(ctx)
	if ent.IsNotFound(err) {
		return &ent.Account{MemberID: memberID}, nil
	}
	return a, err
}
