package audience

import (
	"context"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/schema/enum"
	enttag "github.com/onemember/onemember/ent/tag"
	"github.com/onemember/onemember/internal/audience/rule"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Limits of one assignTags / unassignTags call.
const (
	MaxTagMembers = 10_000
	MaxTags       = 100
)

// CreateTagInput is a new tag; with Rule it is a RULE tag.
type CreateTagInput struct {
	Name     string
	Category string
	Rule     *rule.Rule
}

// CreateTag saves a tag. A RULE tag's rule is checked now and its members
// are assigned by a REFRESH_TAG job, queued in the tag's transaction (and
// again every day by RefreshRuleTags).
func (s *Service) CreateTag(ctx context.Context, in CreateTagInput, staffID *int) (*ent.Tag, error) {
	if in.Name == "" || len(in.Name) > 50 {
		return nil, fault.Invalidf("input.name", "must be 1 to 50 characters")
	}
	if len(in.Category) > 50 {
		return nil, fault.Invalidf("input.category", "must be at most 50 characters")
	}
	if in.Rule != nil {
		if err := s.ready(ctx); err != nil {
			return nil, err
		}
		if _, err := s.Evaluate(ctx, in.Rule); err != nil {
			return nil, err
		}
	}
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Tag, error) {
		c := tx.Tag.Create().SetName(in.Name).SetCategory(in.Category)
		if in.Rule != nil {
			c.SetKind(enttag.KindRULE).SetRule(in.Rule)
		}
		t, err := c.Save(ctx)
		if database.IsUniqueViolation(err) {
			return nil, fault.New(fault.Conflict, fmt.Sprintf("a tag named %q exists", in.Name))
		}
		if err != nil {
			return nil, fmt.Errorf("saving tag: %w", err)
		}
		if in.Rule != nil {
			if _, _, err := s.jobs.EnqueueInTx(ctx, tx, enum.JobRefreshTag, map[string]any{"tagId": t.ID},
				tagRefreshKey(t.ID, "created"), staffID); err != nil {
				return nil, err
			}
		}
		return t, nil
	})
}

// tagRefreshKey names the REFRESH_TAG job of a tag and period: one each.
func tagRefreshKey(tagID int, period string) string {
	return fmt.Sprintf("refresh-tag:%d:%s", tagID, period)
}

// TagMembers is how many active members hold the tag (from the index).
func (s *Service) TagMembers(tagID int) int64 {
	snap := s.index.snap()
	bm := snap.tags[tagID]
	if bm == nil {
		return 0
	}
	return int64(bm.AndCardinality(snap.live))
}

// checkPairs validates an assign / unassign call: the tags must be
// MANUAL tags and the members must exist.
func (s *Service) checkPairs(ctx context.Context, tx *ent.Tx, memberIDs, tagIDs []int) error {
	switch {
	case len(memberIDs) == 0 || len(memberIDs) > MaxTagMembers:
		return fault.Invalidf("input.memberIds", "give 1 to %d members", MaxTagMembers)
	case len(tagIDs) == 0 || len(tagIDs) > MaxTags:
		return fault.Invalidf("input.tagIds", "give 1 to %d tags", MaxTags)
	}
	tags, err := tx.Tag.Query().Where(enttag.IDIn(tagIDs...)).All(ctx)
	if err != nil {
		return err
	}
	if len(tags) != len(unique(tagIDs)) {
		return fault.New(fault.NotFound, "a tag does not exist")
	}
	for _, t := range tags {
		if t.Kind == enttag.KindRULE {
			return fault.Invalidf("input.tagIds", "tag %q is computed from its rule and cannot be assigned by hand", t.Name)
		}
	}
	n, err := tx.Member.Query().Where(member.IDIn(memberIDs...)).Count(ctx)
	if err != nil {
		return err
	}
	if n != len(unique(memberIDs)) {
		return fault.New(fault.NotFound, "a member does not exist")
	}
	return nil
}

func unique(ids []int) map[int]bool {
	out := make(map[int]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out
}

func int64s(ids []int) []int64 {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out
}

// Assign gives every member every tag in one transaction and answers how
// many pairs were new (pairs already assigned are left as they are).
func (s *Service) Assign(ctx context.Context, memberIDs, tagIDs []int) (int, error) {
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (int, error) {
		if err := s.checkPairs(ctx, tx, memberIDs, tagIDs); err != nil {
			return 0, err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO member_tags (tag_id, member_id)
SELECT t, m FROM unnest($1::bigint[]) AS t, unnest($2::bigint[]) AS m
ON CONFLICT DO NOTHING`, pq.Array(int64s(tagIDs)), pq.Array(int64s(memberIDs)))
		if err != nil {
			return 0, fmt.Errorf("assigning tags: %w", err)
		}
		n, err := res.RowsAffected()
		return int(n), err
	})
}

// Unassign takes the tags from the members and answers how many pairs
// were removed.
func (s *Service) Unassign(ctx context.Context, memberIDs, tagIDs []int) (int, error) {
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (int, error) {
		if err := s.checkPairs(ctx, tx, memberIDs, tagIDs); err != nil {
			return 0, err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM member_tags WHERE tag_id = ANY($1) AND member_id = ANY($2)`,
			pq.Array(int64s(tagIDs)), pq.Array(int64s(memberIDs)))
		if err != nil {
			return 0, fmt.Errorf("removing tags: %w", err)
		}
		n, err := res.RowsAffected()
		return int(n), err
	})
}

// RefreshTagHandler is the REFRESH_TAG job: the tag's members become
// exactly those its rule selects now, in one transaction (only the
// difference is written).
func (s *Service) RefreshTagHandler() jobqueue.Handler {
	return func(ctx context.Context, run *jobqueue.Run) error {
		id, err := jobqueue.IntParam(run.Params(), "tagId")
		if err != nil {
			return jobqueue.Permanent(err)
		}
		if err := s.ready(ctx); err != nil {
			return err
		}
		t, err := s.db.Tag.Get(ctx, id)
		if ent.IsNotFound(err) || (err == nil && t.Rule == nil) {
			return jobqueue.Permanent(fmt.Errorf("tag %d is not a rule tag", id))
		}
		if err != nil {
			return err
		}
		want, err := s.Evaluate(ctx, t.Rule)
		if err != nil {
			return jobqueue.Permanent(err)
		}
		_, err = database.WithTx(ctx, s.db, func(tx *ent.Tx) (struct{}, error) {
			have, err := s.tagBitmap(ctx, tx, id)
			if err != nil {
				return struct{}{}, err
			}
			add, drop := roaring.AndNot(want, have), roaring.AndNot(have, want)
			if err := run.SetTotal(ctx, int64(add.GetCardinality()+drop.GetCardinality())); err != nil {
				return struct{}{}, err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM member_tags WHERE tag_id = $1 AND member_id = ANY($2)`, id, pq.Array(ids(drop))); err != nil {
				return struct{}{}, err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO member_tags (tag_id, member_id) SELECT $1, unnest($2::bigint[])
ON CONFLICT DO NOTHING`, id, pq.Array(ids(add))); err != nil {
				return struct{}{}, err
			}
			if _, err := tx.Tag.UpdateOneID(id).SetRefreshedAt(s.now()).Save(ctx); err != nil {
				return struct{}{}, err
			}
			return struct{}{}, run.Advance(ctx, tx, 1, int64(add.GetCardinality()+drop.GetCardinality()), 0)
		})
		return err
	}
}

// tagBitmap reads a tag's members from the table (the index may lag).
func (s *Service) tagBitmap(ctx context.Context, tx *ent.Tx, tagID int) (*roaring.Bitmap, error) {
	return scanMembers(ctx, tx, `SELECT member_id FROM member_tags WHERE tag_id = $1`, tagID)
}

func ids(bm *roaring.Bitmap) []int64 {
	out := make([]int64, 0, bm.GetCardinality())
	it := bm.Iterator()
	for it.HasNext() {
		out = append(out, int64(MemberID(it.Next())))
	}
	return out
}

// RefreshRuleTags queues tonight's refresh of every rule tag (a periodic
// job; the key makes it once a tag and day across replicas).
func (s *Service) RefreshRuleTags(ctx context.Context) (int64, error) {
	tags, err := s.db.Tag.Query().Where(enttag.KindEQ(enttag.KindRULE)).All(ctx)
	if err != nil {
		return 0, err
	}
	day := s.now().In(s.zone).Format("2006-01-02")
	var n int64
	for _, t := range tags {
		if t.RefreshedAt != nil && t.RefreshedAt.In(s.zone).Format("2006-01-02") == day {
			continue
		}
		if _, _, err := s.jobs.Enqueue(ctx, enum.JobRefreshTag, map[string]any{"tagId": t.ID}, tagRefreshKey(t.ID, day), nil); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (s *Service) tagsByID(ctx context.Context, ids []int) ([]*ent.Tag, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	return s.db.Tag.Query().Where(enttag.IDIn(ids...)).Order(ent.Asc(enttag.FieldName)).All(ctx)
}
