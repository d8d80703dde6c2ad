// Package jobs owns the periodic maintenance the server runs: points
// expiry, tier retention reviews and paid membership expiry. Each job is
// safe to run on several replicas at once (they lock each member's account
// row), so every replica simply runs the schedule.
package jobs

import (
	"context"
	"log/slog"
	"time"
)

// Job is one periodic task.
type Job struct {
	Name  string
	Every time.Duration
	Run   func(ctx context.Context) (int64, error)
}

// Scheduler runs jobs until its context ends.
type Scheduler struct {
	jobs []Job
	log  *slog.Logger
}

// New builds a Scheduler.
func New(log *slog.Logger, jobs ...Job) *Scheduler { return &Scheduler{jobs: jobs, log: log} }

// Run starts every job on its own ticker and returns when ctx ends and
// every job has stopped.
func (s *Scheduler) Run(ctx context.Context) {
	done := make(chan struct{}, len(s.jobs))
	for _, j := range s.jobs {
		go func() {
			defer func() { done <- struct{}{} }()
			t := time.NewTicker(j.Every)
			defer t.Stop()
			for {
				s.runOnce(ctx, j)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	for range s.jobs {
		<-done
	}
}

func (s *Scheduler) runOnce(ctx context.Context, j Job) {
	start := time.Now()
	n, err := j.Run(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.ErrorContext(ctx, "job failed", "job", j.Name, "err", err)
	case n > 0:
		s.log.InfoContext(ctx, "job done", "job", j.Name, "changed", n, "took", time.Since(start).Round(time.Millisecond))
	}
}
