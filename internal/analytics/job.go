package analytics

import (
	"context"
	"fmt"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/database"
)

// QueueRfm queues the COMPUTE_RFM job of a model; while one is queued or
// running for the model, asking again answers that job.
func (s *Service) QueueRfm(ctx context.Context, jobs *jobqueue.Queue, modelID int, staffID *int) (*ent.Job, error) {
	m, err := s.db.RfmModel.Get(ctx, modelID)
	if ent.IsNotFound(err) {
		return nil, ErrRfmModelNotFound
	}
	if err != nil {
		return nil, err
	}
	stamp := "never"
	if m.ComputedAt != nil {
		stamp = m.ComputedAt.Format("20060102T150405.000000000")
	}
	job, _, err := jobs.Enqueue(ctx, enum.JobComputeRfm, map[string]any{"modelId": modelID},
		fmt.Sprintf("compute-rfm:%d:%s", modelID, stamp), staffID)
	return job, err
}

// ComputeRfmHandler is the COMPUTE_RFM job. The computation is one
// transaction that replaces the model's results, so a job resumed after a
// crash simply computes again; the job's progress is recorded after it.
func (s *Service) ComputeRfmHandler() jobqueue.Handler {
	return func(ctx context.Context, run *jobqueue.Run) error {
		id, err := jobqueue.IntParam(run.Params(), "modelId")
		if err != nil {
			return err
		}
		n, err := s.ComputeRfm(ctx, id)
		if err != nil {
			return err
		}
		if err := run.SetTotal(ctx, n); err != nil {
			return err
		}
		_, err = database.WithTx(ctx, s.db, func(tx *ent.Tx) (struct{}, error) {
			return struct{}{}, run.Advance(ctx, tx, 1, n, 0)
		})
		return err
	}
}
