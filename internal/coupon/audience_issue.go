package coupon

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// audienceBatch is how many members one transaction of an ISSUE_COUPONS
// job serves.
const audienceBatch = 200

// SourceJobPrefix starts the source of a coupon an ISSUE_COUPONS job
// issued: "job:<job id>".
const SourceJobPrefix = "job:"

// AudienceMembers returns the member ids of a saved audience as computed,
// in ascending order (the app wires the audience package here). An error
// with a fault kind (NOT_FOUND for an unknown audience, …) fails the job
// at once; any other error is retried.
type AudienceMembers func(ctx context.Context, audienceID int) ([]int, error)

// IssueToAudience returns the handler of ISSUE_COUPONS jobs: one coupon of
// params.templateId to every member of the audience params.audienceId.
//
//   - total is the number of members. They are served in ascending id
//     order, audienceBatch members per transaction; each transaction ends
//     with run.Advance to the batch's last member id, so a batch's coupons
//     and the job's progress commit together, and an attempt resumed after
//     a crash (or a lease taken over) skips the members up to the
//     checkpoint. The unique index (issue_job_id, member_id) makes a
//     second coupon of one job to one member impossible even so.
//   - The audience is read again by a resumed attempt: a member who left
//     it meanwhile is not served, one who joined is served only if their
//     id is past the checkpoint (processed+failed may then differ from
//     total).
//   - Each member gets the coupon as IssueInTx gives it (per-member limit,
//     CouponIssued event and notification, stock taken last), with source
//     "job:<id>" and issue_job_id set. A member who already holds the
//     template's per-member limit, or who is not live (merged, erased, or
//     no such member) counts as failed and the batch goes on; frozen
//     members do receive coupons (freezing stops spending, not receiving).
//   - Stock running out is not a failure of the job: every member not yet
//     served counts as failed, and the job SUCCEEDS with the note "out of
//     stock after N coupons" (N issued by the job in all) in its error
//     text. Staff see at a glance how far it got, and re-running the job
//     after adding stock is a new job (a new idempotency key).
//   - A template whose window has ended (ErrEnded), an unknown template or
//     bad parameters fail the job at once (jobqueue.Permanent); the
//     batches committed before stay issued. Other errors roll the batch
//     back and the queue retries the job from its checkpoint.
//
// A batch locks its members' accounts in ascending id order before it
// takes any stock, then the template's row with its first coupon; the row
// stays locked until the batch commits (members claiming this template
// wait for up to one batch). Taking every account first keeps the lock
// order of the other issuers (account, then template), so a claim cannot
// deadlock with a batch.
func (s *Service) IssueToAudience(members AudienceMembers) jobqueue.Handler {
	return func(ctx context.Context, run *jobqueue.Run) error {
		return s.issueToAudience(ctx, run, members)
	}
}

func (s *Service) issueToAudience(ctx context.Context, run *jobqueue.Run, members AudienceMembers) error {
	params := run.Params()
	tplID, terr := jobqueue.IntParam(params, "templateId")
	audID, aerr := jobqueue.IntParam(params, "audienceId")
	if err := errors.Join(terr, aerr); err != nil {
		return err
	}
	t, err := s.db.CouponTemplate.Get(ctx, tplID)
	if ent.IsNotFound(err) {
		return jobqueue.Permanent(fmt.Errorf("coupon template %d: %w", tplID, ErrTemplateNotFound))
	}
	if err != nil {
		return fmt.Errorf("loading coupon template: %w", err)
	}
	if t.ValidTo != nil && !s.now().Before(*t.ValidTo) {
		return jobqueue.Permanent(fmt.Errorf("coupon template %d: %w", tplID, ErrEnded))
	}
	ids, err := members(ctx, audID)
	if err != nil {
		err = fmt.Errorf("reading audience %d: %w", audID, err)
		if fault.CodeOf(err) != fault.Internal {
			return jobqueue.Permanent(err)
		}
		return err
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if err := run.SetTotal(ctx, int64(len(ids))); err != nil {
		return err
	}
	// Members up to the checkpoint were served by an earlier attempt.
	next, _ := slices.BinarySearch(ids, int(run.Checkpoint())+1)
	todo := ids[next:]
	a := audienceRun{s: s, run: run, tplID: tplID, issued: run.Job.Processed}
	for len(todo) > 0 {
		n := min(audienceBatch, len(todo))
		soldOut, err := a.batch(ctx, todo[:n], todo)
		if err != nil || soldOut {
			return err
		}
		todo = todo[n:]
	}
	return nil
}

// audienceRun is one attempt at an ISSUE_COUPONS job.
type audienceRun struct {
	s      *Service
	run    *jobqueue.Run
	tplID  int
	issued int64 // coupons the job has issued so far, in all attempts
}

// errSoldOut stops a batch at members[at], whose coupon found no stock.
type errSoldOut struct{ at int }

func (e *errSoldOut) Error() string {
	return fmt.Sprintf("out of stock at member %d of the batch", e.at)
}

// batch serves batch (the first members of rest, the members still to do)
// in one transaction, and reports whether the stock ran out.
//
// Stock running out at the i-th member leaves that member's coupon and
// event written in the transaction (takeStock is issue's last statement),
// so the batch is rolled back and done again for its first i members only,
// this time ending the job: those i are served, every other member of rest
// counts as failed, and the checkpoint moves past the last member. The
// stock may run out earlier on the second pass (members claiming the
// template meanwhile); each pass serves fewer members, so it ends.
func (a *audienceRun) batch(ctx context.Context, batch, rest []int) (soldOut bool, err error) {
	members := batch
	for {
		ok, err := database.WithTx(ctx, a.s.db, func(tx *ent.Tx) (int64, error) {
			ok, failed, err := a.serve(ctx, tx, members)
			if err != nil {
				return 0, err
			}
			last, skipped := batch[len(batch)-1], int64(0)
			if soldOut {
				last, skipped = rest[len(rest)-1], int64(len(rest)-len(members))
				note := fmt.Sprintf("out of stock after %d coupons", a.issued+ok)
				if err := a.run.NoteInTx(ctx, tx, note); err != nil {
					return 0, err
				}
			}
			return ok, a.run.Advance(ctx, tx, int64(last), ok, failed+skipped)
		})
		if so := (*errSoldOut)(nil); errors.As(err, &so) {
			members, soldOut = members[:so.at], true
			continue
		}
		if err != nil {
			return false, err
		}
		a.issued += ok
		return soldOut, nil
	}
}

// serve issues one coupon to each of members (ascending) in tx and
// answers how many got one and how many were refused. Refusals leave tx
// usable: a member's existence is checked before account.Lock (whose
// INSERT of a missing account would otherwise violate its foreign key),
// and issue refuses a member over the limit after reading only.
func (a *audienceRun) serve(ctx context.Context, tx *ent.Tx, members []int) (ok, failed int64, err error) {
	if len(members) == 0 {
		return 0, 0, nil
	}
	t, err := tx.CouponTemplate.Get(ctx, a.tplID)
	if ent.IsNotFound(err) {
		return 0, 0, jobqueue.Permanent(fmt.Errorf("coupon template %d: %w", a.tplID, ErrTemplateNotFound))
	}
	if err != nil {
		return 0, 0, fmt.Errorf("loading coupon template: %w", err)
	}
	// KEY SHARE: the members found cannot be deleted before tx ends (it
	// does not block updates of their other columns).
	present, err := tx.Member.Query().Where(member.IDIn(members...)).
		Modify(func(s *sql.Selector) {
			s.Select(s.C(member.FieldID)).OrderBy(s.C(member.FieldID)).For(sql.LockKeyShare)
		}).
		Ints(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the batch's members: %w", err)
	}
	// Every account before any stock: the lock order of other issuers.
	accts := make(map[int]*ent.Account, len(present))
	for _, id := range present {
		if accts[id], err = account.Lock(ctx, tx, id); err != nil {
			return 0, 0, err
		}
	}
	// Statuses read under the account locks: a merge or erasure that
	// committed while we waited counts.
	rows, err := tx.Member.Query().Where(member.IDIn(present...)).
		Select(member.FieldID, member.FieldStatus).All(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the batch's members: %w", err)
	}
	live := make(map[int]bool, len(rows))
	for _, m := range rows {
		live[m.ID] = m.Status != member.StatusMERGED && m.Status != member.StatusERASED
	}
	jobID := a.run.Job.ID
	source := fmt.Sprintf("%s%d", SourceJobPrefix, jobID)
	for i, id := range members {
		if !live[id] {
			failed++
			continue
		}
		_, err := a.s.issueFor(ctx, tx, accts[id], t, source, &jobID)
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrLimitExceeded):
			failed++
		case errors.Is(err, ErrOutOfStock):
			return 0, 0, &errSoldOut{at: i}
		case errors.Is(err, ErrEnded):
			return 0, 0, jobqueue.Permanent(fmt.Errorf("coupon template %d: %w", t.ID, err))
		default:
			return 0, 0, fmt.Errorf("issuing coupon to member %d: %w", id, err)
		}
	}
	return ok, failed, nil
}
