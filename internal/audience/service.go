// Package audience is the data centre's audience engine (人群): rule trees
// compiled into roaring bitmaps over member ordinals (member id minus the
// first member id), in-memory bitmap indexes of tags, attributes and RFM
// segments kept current on every replica (Index), saved audiences with
// their computed bitmap, list imports, insight distributions, and tags.
//
// Behaviour counts and AIPL stages are evaluated in SQL into bitmaps and
// cached for a minute; everything else is bitmap algebra in memory, which
// is what lets an operator see the exact size while typing a rule.
package audience

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/onemember/onemember/ent"
	entaudience "github.com/onemember/onemember/ent/audience"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience/rule"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Aipl answers AIPL stages (internal/analytics).
type Aipl interface {
	AiplStageMembers(ctx context.Context, modelID int, at calendar.Date, stages []enum.AiplStage) ([]int, error)
}

// Jobs queues background jobs (internal/jobqueue).
type Jobs interface {
	Enqueue(ctx context.Context, kind enum.JobKind, params map[string]any, idempotencyKey string, staffID *int) (*ent.Job, bool, error)
	EnqueueInTx(ctx context.Context, tx *ent.Tx, kind enum.JobKind, params map[string]any, idempotencyKey string, staffID *int) (*ent.Job, bool, error)
}

// Service runs audiences and tags.
type Service struct {
	db    *ent.Client
	sql   *sql.DB
	index *Index
	aipl  Aipl
	jobs  Jobs
	zone  *time.Location
	now   func() time.Time
	phone func(normalized string) []byte

	cacheMu sync.Mutex
	cache   map[string]cached
	// seen is the index version each ON_CHANGE audience was last
	// recomputed at.
	seen map[int]uint64

	lifeMu    sync.Mutex
	lifeCache lifeEntry
}

type cached struct {
	bm  *roaring.Bitmap
	at  time.Time
	key int64 // computedKey, for saved audiences
}

// Deps are what a Service needs.
type Deps struct {
	DB    *ent.Client
	SQL   *sql.DB
	Index *Index
	Aipl  Aipl
	Jobs  Jobs
	Zone  *time.Location
	Now   func() time.Time
	// PhoneLookup turns a normalized phone into the identities lookup key
	// (identity.LookupKey), for list imports by phone.
	PhoneLookup func(normalized string) []byte
}

// New returns a Service.
func New(d Deps) *Service {
	return &Service{db: d.DB, sql: d.SQL, index: d.Index, aipl: d.Aipl, jobs: d.Jobs, zone: d.Zone, now: d.Now,
		phone: d.PhoneLookup, cache: map[string]cached{}, seen: map[int]uint64{}}
}

// Index is the service's bitmap index.
func (s *Service) Index() *Index { return s.index }

// ErrNotReady is a request that waited readyWait for this replica's
// indexes to be built (a replica just started; /readyz says so too).
var ErrNotReady = fault.New(fault.Conflict, "the audience indexes are still loading; try again in a few seconds")

// readyWait is how long a request waits for the first build.
const readyWait = 10 * time.Second

func (s *Service) ready(ctx context.Context) error {
	select {
	case <-s.index.Ready():
		return nil
	default:
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-s.index.Ready():
		return nil
	case <-t.C:
		return ErrNotReady
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Preview is a rule's result now.
type Preview struct {
	Members *roaring.Bitmap
	Took    time.Duration
}

// Preview evaluates a rule without saving it.
func (s *Service) Preview(ctx context.Context, r *rule.Rule) (*Preview, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	bm, err := s.Evaluate(ctx, r)
	if err != nil {
		return nil, err
	}
	return &Preview{Members: bm, Took: time.Since(start)}, nil
}

// First returns the first n member ids of bm after the ordinal after
// (exclusive; nil from the start), and whether more follow.
func First(bm *roaring.Bitmap, n int, after *uint32) ([]int, bool) {
	it := bm.Iterator()
	if after != nil {
		if *after == ^uint32(0) {
			return nil, false
		}
		it.AdvanceIfNeeded(*after + 1)
	}
	out := make([]int, 0, n)
	for it.HasNext() {
		o := it.Next()
		if len(out) == n {
			return out, true
		}
		out = append(out, MemberID(o))
	}
	return out, false
}

// CreateInput saves a rule audience.
type CreateInput struct {
	Name     string
	Rule     *rule.Rule
	Priority int
	Refresh  enum.AudienceRefresh
}

func (in *CreateInput) validate() error {
	if in.Name == "" || len(in.Name) > 100 {
		return fault.Invalidf("input.name", "must be 1 to 100 characters")
	}
	if in.Refresh == "" {
		in.Refresh = enum.RefreshStatic
	}
	if !enum.Valid(in.Refresh) {
		return fault.Invalidf("input.refresh", "unknown refresh %q", in.Refresh)
	}
	return nil
}

// Create saves a rule audience and computes it at once. A rule may refer
// to saved audiences (union, intersection, difference); a reference
// that leads back to the audience is refused.
func (s *Service) Create(ctx context.Context, in CreateInput) (*ent.Audience, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	bm, err := s.Evaluate(ctx, in.Rule)
	if err != nil {
		return nil, err
	}
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Audience, error) {
		a, err := tx.Audience.Create().SetName(in.Name).SetSource(entaudience.SourceRULE).SetRule(in.Rule).
			SetDependsOn(in.Rule.Audiences()).SetPriority(in.Priority).SetRefresh(in.Refresh).Save(ctx)
		if database.IsUniqueViolation(err) {
			return nil, nameTaken(in.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("saving audience: %w", err)
		}
		return s.store(ctx, tx, a.ID, bm)
	})
}

// Update changes a rule audience's name, rule, priority or refresh and
// recomputes it. A rule that would make the audience depend on itself,
// directly or through other saved audiences, is refused.
func (s *Service) Update(ctx context.Context, id int, in CreateInput) (*ent.Audience, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Audience, error) {
		a, err := tx.Audience.Query().Where(entaudience.ID(id)).ForUpdate().Only(ctx)
		if ent.IsNotFound(err) {
			return nil, fault.New(fault.NotFound, "no such audience")
		}
		if err != nil {
			return nil, err
		}
		if a.Source != entaudience.SourceRULE {
			return nil, fault.Invalidf("id", "an imported audience has no rule")
		}
		if err := checkCycle(ctx, tx, id, in.Rule.Audiences()); err != nil {
			return nil, err
		}
		bm, err := s.Evaluate(ctx, in.Rule)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Audience.UpdateOneID(id).SetName(in.Name).SetRule(in.Rule).SetDependsOn(in.Rule.Audiences()).
			SetPriority(in.Priority).SetRefresh(in.Refresh).Save(ctx); err != nil {
			if database.IsUniqueViolation(err) {
				return nil, nameTaken(in.Name)
			}
			return nil, err
		}
		return s.store(ctx, tx, id, bm)
	})
}

// nameTaken is a second audience with the same name.
func nameTaken(name string) error {
	return fault.New(fault.Conflict, fmt.Sprintf("an audience named %q exists", name))
}

// ErrCycle is a rule whose saved audiences lead back to the audience.
var ErrCycle = fault.Invalidf("input.rule", "the rule refers back to this audience through saved audiences")

// checkCycle walks the dependency graph from deps and refuses one that
// reaches self.
func checkCycle(ctx context.Context, tx *ent.Tx, self int, deps []int) error {
	seen := map[int]bool{}
	frontier := slices.Clone(deps)
	for len(frontier) > 0 {
		if slices.Contains(frontier, self) {
			return ErrCycle
		}
		var next []int
		rows, err := tx.Audience.Query().Where(entaudience.IDIn(frontier...)).Select(entaudience.FieldID, entaudience.FieldDependsOn).All(ctx)
		if err != nil {
			return fmt.Errorf("reading audience dependencies: %w", err)
		}
		for _, a := range rows {
			seen[a.ID] = true
			for _, d := range a.DependsOn {
				if !seen[d] {
					next = append(next, d)
				}
			}
		}
		frontier = next
	}
	return nil
}

// store writes a computed bitmap to the audience.
func (s *Service) store(ctx context.Context, tx *ent.Tx, id int, bm *roaring.Bitmap) (*ent.Audience, error) {
	bm.RunOptimize()
	var buf bytes.Buffer
	if _, err := bm.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("serializing audience: %w", err)
	}
	a, err := tx.Audience.UpdateOneID(id).SetBitmap(buf.Bytes()).SetSize(int64(bm.GetCardinality())).
		SetComputedAt(s.now()).SetStatus(entaudience.StatusREADY).Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("storing audience: %w", err)
	}
	return a, nil
}

// Bitmap is a saved audience's members as computed (ordinals).
func (s *Service) Bitmap(ctx context.Context, a *ent.Audience) (*roaring.Bitmap, error) {
	if bm := s.cachedAudience(a.ID, computedKey(a.ComputedAt)); bm != nil {
		return bm, nil
	}
	bm := roaring.New()
	if len(a.Bitmap) > 0 {
		if _, err := bm.ReadFrom(bytes.NewReader(a.Bitmap)); err != nil {
			return nil, fmt.Errorf("reading audience %d: %w", a.ID, err)
		}
	}
	s.put(audienceKey(a.ID), cached{bm: bm, at: s.now(), key: computedKey(a.ComputedAt)})
	return bm, nil
}

func audienceKey(id int) string { return "audience:" + strconv.Itoa(id) }

// computedKey identifies one computation of an audience (microseconds of
// computed_at, as PostgreSQL keeps them; 0 before the first).
func computedKey(at *time.Time) int64 {
	if at == nil {
		return 0
	}
	return at.UnixMicro()
}

// cachedAudience is the cached bitmap of the audience's computation
// computed, or nil.
func (s *Service) cachedAudience(id int, computed int64) *roaring.Bitmap {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if c, ok := s.cache[audienceKey(id)]; ok && c.key == computed {
		return c.bm
	}
	return nil
}

// savedBitmap is a saved audience's bitmap; computed (from lookupRefs)
// lets a cached copy answer without reading the row.
func (s *Service) savedBitmap(ctx context.Context, id int, computed *int64) (*roaring.Bitmap, error) {
	if computed != nil {
		if bm := s.cachedAudience(id, *computed); bm != nil {
			return bm, nil
		}
	}
	a, err := s.db.Audience.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, fault.New(fault.NotFound, fmt.Sprintf("audience %d does not exist", id))
	}
	if err != nil {
		return nil, err
	}
	return s.Bitmap(ctx, a)
}

// MemberIDs are a saved audience's member ids, ascending (coupon issuing
// jobs go through them in this order).
func (s *Service) MemberIDs(ctx context.Context, audienceID int) ([]int, error) {
	bm, err := s.savedBitmap(ctx, audienceID, nil)
	if err != nil {
		return nil, err
	}
	out := make([]int, 0, bm.GetCardinality())
	it := bm.Iterator()
	for it.HasNext() {
		out = append(out, MemberID(it.Next()))
	}
	return out, nil
}

const maxCached = 256

func (s *Service) put(key string, c cached) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if len(s.cache) >= maxCached {
		var oldest string
		for k, v := range s.cache {
			if oldest == "" || v.at.Before(s.cache[oldest].at) {
				oldest = k
			}
		}
		delete(s.cache, oldest)
	}
	s.cache[key] = c
}

func (s *Service) fresh(key string) *roaring.Bitmap {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if c, ok := s.cache[key]; ok && s.now().Sub(c.at) < behaviorCacheTTL {
		return c.bm
	}
	return nil
}

// behaviorMembers evaluates a behaviour count in SQL. PURCHASE counts
// orders (not fully refunded); REPURCHASE counts orders that had an
// earlier one of the same member; other kinds count behaviour events.
func (s *Service) behaviorMembers(ctx context.Context, b *rule.BehaviorRule) (*roaring.Bitmap, error) {
	bu := 0
	if b.BusinessUnitID != nil {
		bu = *b.BusinessUnitID
	}
	key := fmt.Sprintf("behavior:%s:%d:%d:%d", b.Kind, b.WithinDays, b.MinCount, bu)
	if bm := s.fresh(key); bm != nil {
		return bm, nil
	}
	since := s.now().Add(-time.Duration(b.WithinDays) * 24 * time.Hour)
	var query string
	switch b.Kind {
	case enum.BehaviorPurchase:
		query = `SELECT member_id FROM orders WHERE status <> 'REFUNDED' AND paid_at > $1
AND ($2 = 0 OR business_unit_id = $2) AND $4::text IS NOT NULL GROUP BY member_id HAVING count(*) >= $3`
	case enum.BehaviorRepurchase:
		query = `SELECT o.member_id FROM orders o WHERE o.status <> 'REFUNDED' AND o.paid_at > $1
AND ($2 = 0 OR o.business_unit_id = $2) AND $4::text IS NOT NULL
AND EXISTS (SELECT 1 FROM orders p WHERE p.member_id = o.member_id AND p.status <> 'REFUNDED' AND p.paid_at < o.paid_at)
GROUP BY o.member_id HAVING count(*) >= $3`
	default:
		query = `SELECT member_id FROM behavior_events WHERE kind = $4 AND occurred_at > $1
AND ($2 = 0 OR business_unit_id = $2) GROUP BY member_id HAVING count(*) >= $3`
	}
	bm, err := scanMembers(ctx, s.sql, query, since, bu, b.MinCount, string(b.Kind))
	if err != nil {
		return nil, fmt.Errorf("counting behaviour: %w", err)
	}
	s.put(key, cached{bm: bm, at: s.now()})
	return bm, nil
}

func (s *Service) aiplMembers(ctx context.Context, a *rule.AiplRule, today calendar.Date) (*roaring.Bitmap, error) {
	key := fmt.Sprintf("aipl:%d:%v:%s", a.ModelID, a.Stages, today)
	if bm := s.fresh(key); bm != nil {
		return bm, nil
	}
	ids, err := s.aipl.AiplStageMembers(ctx, a.ModelID, today, a.Stages)
	if err != nil {
		return nil, err
	}
	bm := roaring.New()
	for _, id := range ids {
		if o, ok := Ordinal(id); ok {
			bm.Add(o)
		}
	}
	s.put(key, cached{bm: bm, at: s.now()})
	return bm, nil
}

// scanMembers runs a query answering member ids (on q: the pool or a
// transaction) into a bitmap of their ordinals.
func scanMembers(ctx context.Context, q querier, query string, args ...any) (*roaring.Bitmap, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	bm := roaring.New()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		if o, ok := Ordinal(int(id)); ok {
			bm.Add(o)
		}
	}
	return bm, rows.Err()
}

// Refresh queues a REFRESH_AUDIENCE job (one per audience at a time: the
// same key while one is queued or running answers that job).
func (s *Service) Refresh(ctx context.Context, id int, staffID *int) (*ent.Job, error) {
	a, err := s.db.Audience.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, fault.New(fault.NotFound, "no such audience")
	}
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("refresh-audience:%d:%d", a.ID, a.UpdatedAt.UnixNano())
	job, _, err := s.jobs.Enqueue(ctx, enum.JobRefreshAudience, map[string]any{"audienceId": a.ID}, key, staffID)
	return job, err
}

// RefreshHandler is the REFRESH_AUDIENCE job: it recomputes a rule
// audience from its rule (an imported list stays as uploaded, minus
// members no longer active).
func (s *Service) RefreshHandler() jobqueue.Handler {
	return func(ctx context.Context, run *jobqueue.Run) error {
		id, err := jobqueue.IntParam(run.Params(), "audienceId")
		if err != nil {
			return jobqueue.Permanent(err)
		}
		if err := s.ready(ctx); err != nil {
			return err
		}
		_, err = s.recompute(ctx, id, func(tx *ent.Tx, size int64) error {
			if err := run.SetTotal(ctx, size); err != nil {
				return err
			}
			return run.Advance(ctx, tx, 1, size, 0)
		})
		return err
	}
}

// recompute evaluates an audience again and stores the result; then (in
// the same transaction) calls done. It answers whether the members
// changed; without done, an unchanged result is not written.
func (s *Service) recompute(ctx context.Context, id int, done func(tx *ent.Tx, size int64) error) (bool, error) {
	a, err := s.db.Audience.Get(ctx, id)
	if ent.IsNotFound(err) {
		return false, jobqueue.Permanent(fault.New(fault.NotFound, "no such audience"))
	}
	if err != nil {
		return false, err
	}
	old, err := s.Bitmap(ctx, a)
	if err != nil {
		return false, err
	}
	var bm *roaring.Bitmap
	if a.Rule != nil {
		if bm, err = s.Evaluate(ctx, a.Rule); err != nil {
			return false, err
		}
	} else {
		bm = roaring.And(old, s.index.snap().live)
	}
	changed := !bm.Equals(old)
	if !changed && done == nil {
		return false, nil
	}
	_, err = database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Audience, error) {
		a, err := s.store(ctx, tx, id, bm)
		if err != nil {
			return nil, err
		}
		if done != nil {
			return a, done(tx, int64(bm.GetCardinality()))
		}
		return a, nil
	})
	return changed, err
}

// RefreshDue keeps saved audiences current (a periodic job on every
// replica): DAILY audiences computed before today get a refresh job (one
// per audience and day across replicas, by idempotency key); ON_CHANGE
// audiences are recomputed here whenever this replica's indexes changed
// since the last pass and the result differs.
func (s *Service) RefreshDue(ctx context.Context) (int64, error) {
	select {
	case <-s.index.Ready():
	default:
		return 0, nil // not built yet: the next pass
	}
	today := calendar.In(s.now(), s.zone)
	list, err := s.db.Audience.Query().Where(entaudience.RefreshIn(enum.RefreshDaily, enum.RefreshOnChange),
		entaudience.SourceEQ(entaudience.SourceRULE)).All(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	version := s.index.Version()
	for _, a := range list {
		switch {
		case a.Refresh == enum.RefreshDaily && (a.ComputedAt == nil || a.ComputedAt.Before(today.Start(s.zone))):
			key := fmt.Sprintf("refresh-audience:%d:daily:%s", a.ID, today)
			if _, created, err := s.jobs.Enqueue(ctx, enum.JobRefreshAudience, map[string]any{"audienceId": a.ID}, key, nil); err != nil {
				return n, err
			} else if created {
				n++
			}
		case a.Refresh == enum.RefreshOnChange && version != s.seenVersion(a.ID):
			changed, err := s.recompute(ctx, a.ID, nil)
			if err != nil && !errors.Is(err, fault.ErrBadUserInput) {
				return n, err
			}
			s.markSeen(a.ID, version)
			if changed {
				n++
			}
		}
	}
	return n, nil
}

func (s *Service) seenVersion(id int) uint64 {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	return s.seen[id]
}

func (s *Service) markSeen(id int, v uint64) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	s.seen[id] = v
}

// Of lists the saved audiences the member is in, highest priority first
// (then the most recently computed): the first decides which audience a
// member in several belongs to for marketing.
func (s *Service) Of(ctx context.Context, memberID int) ([]*ent.Audience, error) {
	o, ok := Ordinal(memberID)
	if !ok {
		return nil, nil
	}
	list, err := s.db.Audience.Query().Where(entaudience.StatusEQ(entaudience.StatusREADY)).
		Order(ent.Desc(entaudience.FieldPriority), ent.Desc(entaudience.FieldComputedAt), ent.Asc(entaudience.FieldID)).All(ctx)
	if err != nil {
		return nil, err
	}
	var out []*ent.Audience
	for _, a := range list {
		bm, err := s.Bitmap(ctx, a)
		if err != nil {
			return nil, err
		}
		if bm.Contains(o) {
			out = append(out, a)
		}
	}
	return out, nil
}

// LifecycleStage is a member's lifecycle stage today, computed in SQL
// from the same rules as the index (StageOf).
func (s *Service) LifecycleStage(ctx context.Context, memberID int) (enum.LifecycleStage, error) {
	var reg time.Time
	var last sql.NullTime
	err := s.sql.QueryRowContext(ctx, `SELECT m.registered_at,
  (SELECT max(paid_at) FROM orders o WHERE o.member_id = m.id AND o.status <> 'REFUNDED')
FROM members m WHERE m.id = $1`, memberID).Scan(&reg, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fault.New(fault.NotFound, "no such member")
	}
	if err != nil {
		return "", err
	}
	today := dayNumber(s.now(), s.zone)
	var lastDay int32
	if last.Valid {
		lastDay = dayNumber(last.Time, s.zone)
	}
	return StageOf(dayNumber(reg, s.zone), lastDay, today), nil
}

// LifecycleStat is one stage's members today.
type LifecycleStat struct {
	Stage   enum.LifecycleStage
	Members int64
	Share   float64
}

// LifecycleStats counts active members by lifecycle stage today.
func (s *Service) LifecycleStats(ctx context.Context) ([]LifecycleStat, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	snap := s.index.snap()
	stages := s.lifecycleOf(snap, calendar.In(s.now(), s.zone))
	total := snap.live.GetCardinality()
	var out []LifecycleStat
	for _, st := range []enum.LifecycleStage{enum.LifecycleNew, enum.LifecycleActive, enum.LifecycleSleeping, enum.LifecycleChurned, enum.LifecycleProspect} {
		n := stages[st].GetCardinality()
		out = append(out, LifecycleStat{Stage: st, Members: int64(n), Share: share(n, total)})
	}
	return out, nil
}

func share(n, total uint64) float64 {
	if total == 0 {
		return 0
	}
	return float64(n) / float64(total)
}

// MemberTags are the tags a member holds, by name.
func (s *Service) MemberTags(ctx context.Context, memberID int) ([]*ent.Tag, error) {
	rows, err := s.sql.QueryContext(ctx, `SELECT tag_id FROM member_tags WHERE member_id = $1`, memberID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return s.tagsByID(ctx, ids)
}
