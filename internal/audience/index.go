package audience

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent/schema/enum"
)

// memberBase is the first member id: ent's global ids give every table a
// 2^32 range (ent/internal/globalid.go, "members"), so a member's ordinal
// in the bitmaps is its id minus memberBase and always fits 32 bits.
const memberBase = 21474836480

// Ordinal is a member's position in the bitmaps.
func Ordinal(memberID int) (uint32, bool) {
	o := int64(memberID) - memberBase
	if o < 0 || o > math.MaxUint32 {
		return 0, false
	}
	return uint32(o), true
}

// MemberID is the member at ordinal o.
func MemberID(o uint32) int { return int(int64(o) + memberBase) }

// epoch is day 0 of the day numbers kept per member (registration, last
// purchase): days since 2000-01-01 in the business zone; 0 means none.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// dayNumber is t's business date as a day number (≥ 1).
func dayNumber(t time.Time, zone *time.Location) int32 {
	y, m, d := t.In(zone).Date()
	n := int32(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Sub(epoch).Hours() / 24)
	return max(n, 1)
}

// snapshot is one consistent state of the indexes. Bitmaps are shared
// between snapshots and never changed once published: a change copies the
// bitmaps it touches (copy on write), so readers never lock.
type snapshot struct {
	live     *roaring.Bitmap // ACTIVE members
	gender   map[enum.Gender]*roaring.Bitmap
	tier     map[int]*roaring.Bitmap // tier id (0: no tier)
	channel  map[enum.Channel]*roaring.Bitmap
	bu       map[int]*roaring.Bitmap    // source business unit id (0: none)
	region   map[string]*roaring.Bitmap // region code ("" unknown)
	tags     map[int]*roaring.Bitmap
	rfm      map[int]map[enum.RfmSegment]*roaring.Bitmap
	rfmAt    map[int]time.Time // computed_at of each loaded RFM model
	attrs    *attrs
	version  uint64
	builtAt  time.Time
	capacity uint32
}

// attrs are the per-member values, indexed by ordinal, that ranges test
// (age, registration date, lifecycle) and that a change needs to take a
// member's old bits out. Copying them on every replay would cost tens of
// megabytes a second at a million members, so a replay changes them in
// place under mu (write) and readers scan them under mu (read).
type attrs struct {
	mu         sync.RWMutex
	regDay     []int32
	lastBuy    []int32
	birthYear  []int16
	birthMonth []int8
	gender     []enum.Gender
	tier       []int
	channel    []enum.Channel
	bu         []int
	region     []string
	live       []bool
}

// eachLive calls fn for every live member ordinal of the snapshot that
// has attributes, in ascending order, with at read-locked (fn must not
// keep it).
func (s *snapshot) eachLive(fn func(o uint32, at *attrs)) {
	at := s.attrs
	at.mu.RLock()
	defer at.mu.RUnlock()
	it := s.live.Iterator()
	for it.HasNext() {
		o := it.Next()
		if int(o) >= len(at.regDay) {
			return
		}
		fn(o, at)
	}
}

func (a *attrs) grow(n int) {
	if n <= len(a.regDay) {
		return
	}
	n = max(n, len(a.regDay)*5/4)
	a.regDay = slices.Grow(a.regDay, n-len(a.regDay))[:n]
	a.lastBuy = slices.Grow(a.lastBuy, n-len(a.lastBuy))[:n]
	a.birthYear = slices.Grow(a.birthYear, n-len(a.birthYear))[:n]
	a.birthMonth = slices.Grow(a.birthMonth, n-len(a.birthMonth))[:n]
	a.gender = slices.Grow(a.gender, n-len(a.gender))[:n]
	a.tier = slices.Grow(a.tier, n-len(a.tier))[:n]
	a.channel = slices.Grow(a.channel, n-len(a.channel))[:n]
	a.bu = slices.Grow(a.bu, n-len(a.bu))[:n]
	a.region = slices.Grow(a.region, n-len(a.region))[:n]
	a.live = slices.Grow(a.live, n-len(a.live))[:n]
}

// Index holds the bitmap indexes of one replica: members by attribute,
// tag and RFM segment. Build loads them; Run keeps them current by
// replaying member_changes (written by triggers on members, member_tags
// and orders) every Poll, so every replica sees a change within a few
// seconds. Readers take the current snapshot without locking.
type Index struct {
	db   *sql.DB
	zone *time.Location
	now  func() time.Time
	poll time.Duration
	log  *slog.Logger

	cur atomic.Pointer[snapshot]
	// mu serializes writers (Build and the replay).
	mu      sync.Mutex
	horizon string // the xid8 below which member_changes are applied
	ready   chan struct{}
	once    sync.Once
}

// IndexOptions tune an Index.
type IndexOptions struct {
	// Poll is how often member_changes are replayed (default 1 s).
	Poll time.Duration
	// Log receives failed passes (default: discarded).
	Log *slog.Logger
}

// NewIndex returns an empty index; Build or Run fills it.
func NewIndex(db *sql.DB, zone *time.Location, now func() time.Time, opts IndexOptions) *Index {
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	ix := &Index{db: db, zone: zone, now: now, poll: opts.Poll, log: opts.Log, ready: make(chan struct{})}
	ix.cur.Store(emptySnapshot())
	return ix
}

func emptySnapshot() *snapshot {
	return &snapshot{
		live: roaring.New(), gender: map[enum.Gender]*roaring.Bitmap{}, tier: map[int]*roaring.Bitmap{},
		channel: map[enum.Channel]*roaring.Bitmap{}, bu: map[int]*roaring.Bitmap{}, region: map[string]*roaring.Bitmap{},
		tags: map[int]*roaring.Bitmap{}, rfm: map[int]map[enum.RfmSegment]*roaring.Bitmap{}, rfmAt: map[int]time.Time{},
		attrs: &attrs{},
	}
}

// Ready is closed once the first Build has finished.
func (ix *Index) Ready() <-chan struct{} { return ix.ready }

// Version changes whenever the indexes change.
func (ix *Index) Version() uint64 { return ix.cur.Load().version }

func (ix *Index) snap() *snapshot { return ix.cur.Load() }

// Run builds the index and then replays changes until ctx ends. A pass
// that fails is retried at the next poll; a replay with more than
// rebuildAbove members rebuilds instead.
func (ix *Index) Run(ctx context.Context) error {
	t := time.NewTicker(ix.poll)
	defer t.Stop()
	for {
		var err error
		if ix.now().Sub(ix.snap().builtAt) > rebuildEvery {
			err = ix.Build(ctx) // the first pass, and now and then
		} else {
			_, err = ix.Refresh(ctx)
		}
		// A failed pass changes nothing; the next one retries from the
		// same horizon.
		if err != nil && ctx.Err() == nil {
			ix.log.WarnContext(ctx, "audience index update failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// rebuildEvery bounds how long an index lives on replays alone: a full
// rebuild now and then is cheap insurance against anything a replay could
// miss (say, a replica paused for longer than member_changes are kept).
const rebuildEvery = 6 * time.Hour

// rebuildAbove is how many changed members a replay applies one by one;
// beyond it a full Build is cheaper.
const rebuildAbove = 200_000

// Build loads every index from one consistent snapshot of the database
// and remembers that snapshot's horizon, from which Refresh replays.
func (ix *Index) Build(ctx context.Context) error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.build(ctx)
}

func (ix *Index) build(ctx context.Context) error {
	tx, err := ix.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("beginning index build: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	var horizon string
	if err := tx.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`).Scan(&horizon); err != nil {
		return fmt.Errorf("reading horizon: %w", err)
	}
	s := emptySnapshot()
	b := &builder{s: s, zone: ix.zone}
	if err := b.loadMembers(ctx, tx, nil); err != nil {
		return err
	}
	if err := b.loadLastPurchases(ctx, tx, nil); err != nil {
		return err
	}
	if err := b.loadTags(ctx, tx, nil, nil); err != nil {
		return err
	}
	if err := b.loadRfm(ctx, tx, nil); err != nil {
		return err
	}
	s.live.RunOptimize()
	s.version = ix.snap().version + 1
	s.builtAt = ix.now()
	ix.cur.Store(s)
	ix.horizon = horizon
	ix.once.Do(func() { close(ix.ready) })
	return nil
}

// Refresh applies the member changes committed since the horizon (the
// oldest transaction running at the last Build or Refresh) and reloads RFM
// models computed since; it returns how many members and tags it
// reloaded.
func (ix *Index) Refresh(ctx context.Context) (int, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.horizon == "" {
		return 0, ix.build(ctx)
	}
	// Everything committed is applied now; what a transaction still
	// running (at or above the horizon) writes is read again by later
	// passes until the horizon passes it, so a late commit is never
	// skipped. Reloading a member is idempotent, so reading a change twice
	// is harmless.
	rows, err := ix.db.QueryContext(ctx, `SELECT DISTINCT pg_snapshot_xmin(pg_current_snapshot())::text, member_id, tag_id
FROM (SELECT NULL::bigint AS member_id, NULL::bigint AS tag_id
      UNION ALL SELECT member_id, tag_id FROM member_changes WHERE tx_id >= $1::xid8) c`, ix.horizon)
	if err != nil {
		return 0, fmt.Errorf("reading member changes: %w", err)
	}
	var members, tags []int64
	var next string
	for rows.Next() {
		var m, t sql.NullInt64
		if err := rows.Scan(&next, &m, &t); err != nil {
			rows.Close()
			return 0, err
		}
		if m.Valid {
			members = append(members, m.Int64)
		}
		if t.Valid {
			tags = append(tags, t.Int64)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(members) > rebuildAbove {
		return len(members), ix.build(ctx)
	}
	old := ix.snap()
	rfmChanged, err := ix.rfmChanged(ctx, old)
	if err != nil {
		return 0, err
	}
	if len(members) == 0 && len(tags) == 0 && len(rfmChanged) == 0 {
		ix.horizon = next
		return 0, nil
	}
	s := old.cloneShallow()
	b := &builder{s: s, zone: ix.zone, cow: map[*roaring.Bitmap]*roaring.Bitmap{}}
	q := ix.db
	if len(members) > 0 {
		if err := b.loadMembers(ctx, q, members); err != nil {
			return 0, err
		}
		if err := b.loadLastPurchases(ctx, q, members); err != nil {
			return 0, err
		}
	}
	if len(members) > 0 || len(tags) > 0 {
		if err := b.loadTags(ctx, q, members, tags); err != nil {
			return 0, err
		}
	}
	if len(rfmChanged) > 0 {
		if err := b.loadRfm(ctx, q, rfmChanged); err != nil {
			return 0, err
		}
	}
	s.version = old.version + 1
	ix.cur.Store(s)
	ix.horizon = next
	return len(members) + len(tags), nil
}

// rfmChanged lists the RFM models computed since they were loaded.
func (ix *Index) rfmChanged(ctx context.Context, s *snapshot) ([]int64, error) {
	rows, err := ix.db.QueryContext(ctx, `SELECT id, computed_at FROM rfm_models WHERE computed_at IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("reading rfm models: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		if !s.rfmAt[int(id)].Equal(at) {
			out = append(out, id)
		}
	}
	return out, rows.Err()
}

func (s *snapshot) cloneShallow() *snapshot {
	return &snapshot{
		live: s.live, gender: cloneMap(s.gender), tier: cloneMap(s.tier), channel: cloneMap(s.channel),
		bu: cloneMap(s.bu), region: cloneMap(s.region), tags: cloneMap(s.tags), rfm: cloneMap(s.rfm),
		rfmAt: cloneMap(s.rfmAt), attrs: s.attrs, builtAt: s.builtAt,
	}
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// querier is a pool or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// builder fills a snapshot. With cow set (a replay) every bitmap it
// changes is copied first, once, so the published snapshot stays intact.
type builder struct {
	s    *snapshot
	zone *time.Location
	cow  map[*roaring.Bitmap]*roaring.Bitmap
}

// own returns a bitmap of m[k] that this builder may change.
func own[K comparable](b *builder, m map[K]*roaring.Bitmap, k K) *roaring.Bitmap {
	bm := m[k]
	if bm == nil {
		bm = roaring.New()
		m[k] = bm
		if b.cow != nil {
			b.cow[bm] = bm
		}
		return bm
	}
	if b.cow == nil {
		return bm
	}
	if c, ok := b.cow[bm]; ok {
		return c
	}
	c := bm.Clone()
	b.cow[c] = c
	m[k] = c
	return c
}

func (b *builder) ownLive() *roaring.Bitmap {
	m := map[int]*roaring.Bitmap{0: b.s.live}
	bm := own(b, m, 0)
	b.s.live = bm
	return bm
}

type memberRow struct {
	id                    int64
	status, gender, chann string
	region                string
	by, bm, tier, bu      sql.NullInt64
	reg                   time.Time
}

// loadMembers reads members (all, or those listed) and sets their bits,
// taking a changed member's old bits out first.
func (b *builder) loadMembers(ctx context.Context, q querier, ids []int64) error {
	query := `SELECT id, status, gender, birth_year, birth_month, region_code, tier_id, source_channel,
	source_business_unit_id, registered_at FROM members`
	args := []any{}
	if ids != nil {
		query += ` WHERE id = ANY($1)`
		args = append(args, pq.Array(ids))
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("reading members: %w", err)
	}
	defer rows.Close()
	var batch []memberRow
	for rows.Next() {
		var r memberRow
		if err := rows.Scan(&r.id, &r.status, &r.gender, &r.by, &r.bm, &r.region, &r.tier, &r.chann, &r.bu, &r.reg); err != nil {
			return err
		}
		batch = append(batch, r)
		if len(batch) == 10_000 {
			b.applyMembers(batch, ids != nil)
			batch = batch[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	b.applyMembers(batch, ids != nil)
	return nil
}

func (b *builder) applyMembers(batch []memberRow, changed bool) {
	a := b.s.attrs
	a.mu.Lock()
	defer a.mu.Unlock()
	live := b.s.live
	if changed {
		live = b.ownLive()
	}
	for _, r := range batch {
		o, ok := Ordinal(int(r.id))
		if !ok {
			continue
		}
		a.grow(int(o) + 1)
		if changed && a.regDay[o] != 0 {
			b.clear(o)
		}
		a.regDay[o] = dayNumber(r.reg, b.zone)
		a.birthYear[o] = int16(r.by.Int64)
		a.birthMonth[o] = int8(r.bm.Int64)
		a.gender[o] = enum.Gender(r.gender)
		a.tier[o] = int(r.tier.Int64)
		a.channel[o] = enum.Channel(r.chann)
		a.bu[o] = int(r.bu.Int64)
		a.region[o] = r.region
		a.live[o] = r.status == "ACTIVE"
		if a.live[o] {
			live.Add(o)
			own(b, b.s.gender, a.gender[o]).Add(o)
			own(b, b.s.tier, a.tier[o]).Add(o)
			own(b, b.s.channel, a.channel[o]).Add(o)
			own(b, b.s.bu, a.bu[o]).Add(o)
			own(b, b.s.region, a.region[o]).Add(o)
		} else {
			live.Remove(o)
		}
		b.s.capacity = max(b.s.capacity, o+1)
	}
}

// clear takes member o out of the attribute bitmaps it was in.
func (b *builder) clear(o uint32) {
	a := b.s.attrs
	if !a.live[o] {
		return
	}
	if bm := b.s.gender[a.gender[o]]; bm != nil && bm.Contains(o) {
		own(b, b.s.gender, a.gender[o]).Remove(o)
	}
	if bm := b.s.tier[a.tier[o]]; bm != nil && bm.Contains(o) {
		own(b, b.s.tier, a.tier[o]).Remove(o)
	}
	if bm := b.s.channel[a.channel[o]]; bm != nil && bm.Contains(o) {
		own(b, b.s.channel, a.channel[o]).Remove(o)
	}
	if bm := b.s.bu[a.bu[o]]; bm != nil && bm.Contains(o) {
		own(b, b.s.bu, a.bu[o]).Remove(o)
	}
	if bm := b.s.region[a.region[o]]; bm != nil && bm.Contains(o) {
		own(b, b.s.region, a.region[o]).Remove(o)
	}
}

// loadLastPurchases sets each member's last purchase day: the latest
// order that is not fully refunded.
func (b *builder) loadLastPurchases(ctx context.Context, q querier, ids []int64) error {
	query := `SELECT member_id, max(paid_at) FROM orders WHERE status <> 'REFUNDED' GROUP BY member_id`
	args := []any{}
	if ids != nil {
		query = `SELECT m.id, (SELECT max(paid_at) FROM orders o WHERE o.member_id = m.id AND o.status <> 'REFUNDED')
FROM unnest($1::bigint[]) AS m(id)`
		args = append(args, pq.Array(ids))
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("reading last purchases: %w", err)
	}
	defer rows.Close()
	type last struct {
		o   uint32
		day int32
	}
	var got []last
	for rows.Next() {
		var id int64
		var at sql.NullTime
		if err := rows.Scan(&id, &at); err != nil {
			return err
		}
		if o, ok := Ordinal(int(id)); ok {
			l := last{o: o}
			if at.Valid {
				l.day = dayNumber(at.Time, b.zone)
			}
			got = append(got, l)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	a := b.s.attrs
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range got {
		if int(l.o) < len(a.lastBuy) {
			a.lastBuy[l.o] = l.day
		}
	}
	return nil
}

// loadTags reads tag assignments: all of them, or those of some members
// and whole tags.
func (b *builder) loadTags(ctx context.Context, q querier, members, tags []int64) error {
	if members == nil && tags == nil {
		return b.scanTags(ctx, q, `SELECT tag_id, member_id FROM member_tags`)
	}
	for _, t := range tags {
		fresh := roaring.New()
		b.s.tags[int(t)] = fresh
		b.cow[fresh] = fresh
	}
	if len(tags) > 0 {
		if err := b.scanTags(ctx, q, `SELECT tag_id, member_id FROM member_tags WHERE tag_id = ANY($1)`, pq.Array(tags)); err != nil {
			return err
		}
	}
	if len(members) == 0 {
		return nil
	}
	// Take the members out of every tag, then put back what they hold.
	changed := roaring.New()
	for _, m := range members {
		if o, ok := Ordinal(int(m)); ok {
			changed.Add(o)
		}
	}
	for id, bm := range b.s.tags {
		if !slices.Contains(tags, int64(id)) && bm.Intersects(changed) {
			own(b, b.s.tags, id).AndNot(changed)
		}
	}
	return b.scanTags(ctx, q, `SELECT tag_id, member_id FROM member_tags WHERE member_id = ANY($1)`, pq.Array(members))
}

func (b *builder) scanTags(ctx context.Context, q querier, query string, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("reading tags: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var tag, member int64
		if err := rows.Scan(&tag, &member); err != nil {
			return err
		}
		if o, ok := Ordinal(int(member)); ok {
			own(b, b.s.tags, int(tag)).Add(o)
		}
	}
	return rows.Err()
}

// loadRfm reads the segments of computed RFM models (all, or those listed).
func (b *builder) loadRfm(ctx context.Context, q querier, models []int64) error {
	query := `SELECT m.id, m.computed_at, r.segment, r.member_id FROM rfm_models m
JOIN rfm_results r ON r.model_id = m.id WHERE m.computed_at IS NOT NULL`
	args := []any{}
	if models != nil {
		query += ` AND m.id = ANY($1)`
		args = append(args, pq.Array(models))
		for _, id := range models {
			b.s.rfm[int(id)] = map[enum.RfmSegment]*roaring.Bitmap{}
			delete(b.s.rfmAt, int(id))
		}
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("reading rfm results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var model, member int64
		var at time.Time
		var seg string
		if err := rows.Scan(&model, &at, &seg, &member); err != nil {
			return err
		}
		segs := b.s.rfm[int(model)]
		if segs == nil {
			segs = map[enum.RfmSegment]*roaring.Bitmap{}
			b.s.rfm[int(model)] = segs
		}
		b.s.rfmAt[int(model)] = at
		bm := segs[enum.RfmSegment(seg)]
		if bm == nil {
			bm = roaring.New()
			segs[enum.RfmSegment(seg)] = bm
		}
		if o, ok := Ordinal(int(member)); ok {
			bm.Add(o)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// A model computed with no results counts as loaded too.
	return b.markComputed(ctx, q, models)
}

func (b *builder) markComputed(ctx context.Context, q querier, models []int64) error {
	query, args := `SELECT id, computed_at FROM rfm_models WHERE computed_at IS NOT NULL`, []any{}
	if models != nil {
		query += ` AND id = ANY($1)`
		args = append(args, pq.Array(models))
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return err
		}
		b.s.rfmAt[int(id)] = at
	}
	return rows.Err()
}

// changesKept is how long member_changes rows stay: replicas replay them
// within a second or two; one that was down longer rebuilds at start.
const changesKept = time.Hour

// Prune deletes member_changes older than changesKept (a periodic job).
func (ix *Index) Prune(ctx context.Context) (int64, error) {
	res, err := ix.db.ExecContext(ctx, `DELETE FROM member_changes WHERE changed_at < $1`, ix.now().Add(-changesKept))
	if err != nil {
		return 0, fmt.Errorf("pruning member changes: %w", err)
	}
	return res.RowsAffected()
}
