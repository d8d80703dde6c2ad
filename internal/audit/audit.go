// Package audit owns the audit trail: an append-only record of who did what
// to which object, written in the same transaction as the change.
package audit

import (
	"context"
	"fmt"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/platform/obs"
)

// Actor is who acted: "staff", "member", "api_client" or "system".
type Actor struct {
	Kind string
	ID   int
}

// System is the actor of jobs and start-up tasks.
var System = Actor{Kind: "system"}

// Entry is one audited action.
type Entry struct {
	Actor       Actor
	Action      string
	SubjectType string
	SubjectID   int
	Detail      map[string]any
}

// Record writes e through db (pass the transaction's client).
func Record(ctx context.Context, db *ent.Client, e Entry) error {
	err := db.AuditLog.Create().
		SetActorKind(e.Actor.Kind).SetActorID(e.Actor.ID).
		SetAction(e.Action).SetSubjectType(e.SubjectType).SetSubjectID(e.SubjectID).
		SetDetail(e.Detail).SetRequestID(obs.RequestID(ctx)).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}
