package coupon

import (
	"context"
	"fmt"

	"github.com/onemember/onemember/ent"
	entaudience "github.com/onemember/onemember/ent/audience"
	"github.com/onemember/onemember/ent/coupontemplate"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/fault"
)

// QueueIssue queues the ISSUE_COUPONS job of a template to a saved
// audience (issueCoupons). The staff's idempotency key names the job: the
// same key again answers the same job, and the same key with another
// template or audience is a CONFLICT.
func (s *Service) QueueIssue(ctx context.Context, jobs *jobqueue.Queue, templateID, audienceID int, key string, staffID *int) (*ent.Job, error) {
	if key == "" || len(key) > 100 {
		return nil, fault.Invalidf("input.idempotencyKey", "must be 1 to 100 characters")
	}
	if ok, err := s.db.CouponTemplate.Query().Where(coupontemplate.ID(templateID)).Exist(ctx); err != nil {
		return nil, err
	} else if !ok {
		return nil, ErrTemplateNotFound
	}
	if ok, err := s.db.Audience.Query().Where(entaudience.ID(audienceID)).Exist(ctx); err != nil {
		return nil, err
	} else if !ok {
		return nil, fault.New(fault.NotFound, "no such audience")
	}
	params := map[string]any{"templateId": templateID, "audienceId": audienceID}
	job, created, err := jobs.Enqueue(ctx, enum.JobIssueCoupons, params, "issue-coupons:"+key, staffID)
	if err != nil {
		return nil, err
	}
	if !created {
		t, _ := jobqueue.IntParam(job.Params, "templateId")
		a, _ := jobqueue.IntParam(job.Params, "audienceId")
		if t != templateID || a != audienceID {
			return nil, fault.New(fault.Conflict, fmt.Sprintf("idempotency key %q was used for another issue", key))
		}
	}
	return job, nil
}
