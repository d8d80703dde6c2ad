package audience

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience/rule"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// refs are the names a rule uses, looked up in one round trip: tiers
// and business units by code, and which tags, models and audiences exist.
type refs struct {
	tierByCode map[string]tierRef
	buByCode   map[string]int
	tags       map[int]bool
	rfm        map[int]bool
	aipl       map[int]bool
	audiences  map[int]int64 // computedKey of each
}

type tierRef struct{ id, rank int }

// lookupRefs reads every table a rule names with one statement.
func (s *Service) lookupRefs(ctx context.Context, r *rule.Rule) (*refs, error) {
	var tags, rfms, aipls, auds []int64
	r.Walk(func(n *rule.Rule) {
		switch {
		case n.Tag != nil:
			for _, id := range n.Tag.TagIDs {
				tags = append(tags, int64(id))
			}
		case n.Rfm != nil:
			rfms = append(rfms, int64(n.Rfm.ModelID))
		case n.Aipl != nil:
			aipls = append(aipls, int64(n.Aipl.ModelID))
		case n.Audience != nil:
			auds = append(auds, int64(*n.Audience))
		}
	})
	rows, err := s.sql.QueryContext(ctx, `
SELECT 'tier', id, code, rank FROM tiers
UNION ALL SELECT 'bu', id, code, 0 FROM business_units
UNION ALL SELECT 'tag', id, '', 0 FROM tags WHERE id = ANY($1)
UNION ALL SELECT 'rfm', id, '', 0 FROM rfm_models WHERE id = ANY($2)
UNION ALL SELECT 'aipl', id, '', 0 FROM aipl_models WHERE id = ANY($3)
UNION ALL SELECT 'audience', id, '', coalesce((extract(epoch FROM computed_at) * 1000000)::bigint, 0)
  FROM audiences WHERE id = ANY($4)`,
		pq.Array(tags), pq.Array(rfms), pq.Array(aipls), pq.Array(auds))
	if err != nil {
		return nil, fmt.Errorf("looking up rule references: %w", err)
	}
	defer rows.Close()
	out := &refs{tierByCode: map[string]tierRef{}, buByCode: map[string]int{}, tags: map[int]bool{},
		rfm: map[int]bool{}, aipl: map[int]bool{}, audiences: map[int]int64{}}
	for rows.Next() {
		var kind, code string
		var id int
		var rank int64
		if err := rows.Scan(&kind, &id, &code, &rank); err != nil {
			return nil, err
		}
		switch kind {
		case "tier":
			out.tierByCode[code] = tierRef{id: id, rank: int(rank)}
		case "bu":
			out.buByCode[code] = id
		case "tag":
			out.tags[id] = true
		case "rfm":
			out.rfm[id] = true
		case "aipl":
			out.aipl[id] = true
		case "audience":
			out.audiences[id] = rank
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, out.check(r)
}

// check refuses references to things that do not exist.
func (f *refs) check(r *rule.Rule) error {
	var err error
	r.Walk(func(n *rule.Rule) {
		if err != nil {
			return
		}
		switch {
		case n.Tag != nil:
			for _, id := range n.Tag.TagIDs {
				if !f.tags[id] {
					err = fault.New(fault.NotFound, fmt.Sprintf("tag %d does not exist", id))
				}
			}
		case n.Rfm != nil && !f.rfm[n.Rfm.ModelID]:
			err = fault.New(fault.NotFound, fmt.Sprintf("RFM model %d does not exist", n.Rfm.ModelID))
		case n.Aipl != nil && !f.aipl[n.Aipl.ModelID]:
			err = fault.New(fault.NotFound, fmt.Sprintf("AIPL model %d does not exist", n.Aipl.ModelID))
		case n.Audience != nil && !has(f.audiences, *n.Audience):
			err = fault.New(fault.NotFound, fmt.Sprintf("audience %d does not exist", *n.Audience))
		case n.Behavior != nil && n.Behavior.BusinessUnitID != nil && !slices.Contains(mapValues(f.buByCode), *n.Behavior.BusinessUnitID):
			err = fault.Invalidf("rule.behavior.businessUnitId", "business unit %d does not exist", *n.Behavior.BusinessUnitID)
		}
	})
	return err
}

func has[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Evaluate answers the members (ordinals of ACTIVE members) a rule
// selects now. Behaviour counts, AIPL stages and saved audiences are
// fetched first (SQL or the stored bitmap); the rest is bitmap algebra
// over one snapshot of the in-memory indexes.
func (s *Service) Evaluate(ctx context.Context, r *rule.Rule) (*roaring.Bitmap, error) {
	if err := r.Validate(); err != nil {
		return nil, fault.Invalidf("rule", "%s", strings.TrimPrefix(err.Error(), rule.ErrInvalid.Error()+": "))
	}
	f, err := s.lookupRefs(ctx, r)
	if err != nil {
		return nil, err
	}
	e := &evaluator{s: s, snap: s.index.snap(), refs: f, today: calendar.In(s.now(), s.zone), pre: map[*rule.Rule]*roaring.Bitmap{}}
	if err := e.prefetch(ctx, r); err != nil {
		return nil, err
	}
	out, err := e.eval(r)
	if err != nil {
		return nil, err
	}
	return roaring.And(out, e.snap.live), nil
}

type evaluator struct {
	s     *Service
	snap  *snapshot
	refs  *refs
	today calendar.Date
	pre   map[*rule.Rule]*roaring.Bitmap
	life  map[enum.LifecycleStage]*roaring.Bitmap
}

// prefetch evaluates the leaves that need the database.
func (e *evaluator) prefetch(ctx context.Context, r *rule.Rule) error {
	var err error
	r.Walk(func(n *rule.Rule) {
		if err != nil {
			return
		}
		var bm *roaring.Bitmap
		switch {
		case n.Behavior != nil:
			bm, err = e.s.behaviorMembers(ctx, n.Behavior)
		case n.Aipl != nil:
			bm, err = e.s.aiplMembers(ctx, n.Aipl, e.today)
		case n.Audience != nil:
			computed := e.refs.audiences[*n.Audience]
			bm, err = e.s.savedBitmap(ctx, *n.Audience, &computed)
		default:
			return
		}
		e.pre[n] = bm
	})
	return err
}

// eval returns a bitmap that callers must not change (it may be one of
// the snapshot's).
func (e *evaluator) eval(r *rule.Rule) (*roaring.Bitmap, error) {
	switch {
	case r.And != nil:
		var pos, neg []*roaring.Bitmap
		for _, k := range r.And {
			target, list := k, &pos
			if k.Not != nil {
				target, list = k.Not, &neg
			}
			bm, err := e.eval(target)
			if err != nil {
				return nil, err
			}
			*list = append(*list, bm)
		}
		var out *roaring.Bitmap
		if len(pos) == 0 {
			out = e.snap.live
		} else {
			out = roaring.FastAnd(pos...)
		}
		if len(neg) > 0 {
			out = roaring.AndNot(out, roaring.FastOr(neg...))
		}
		return out, nil
	case r.Or != nil:
		kids := make([]*roaring.Bitmap, 0, len(r.Or))
		for _, k := range r.Or {
			bm, err := e.eval(k)
			if err != nil {
				return nil, err
			}
			kids = append(kids, bm)
		}
		return roaring.FastOr(kids...), nil
	case r.Not != nil:
		bm, err := e.eval(r.Not)
		if err != nil {
			return nil, err
		}
		return roaring.AndNot(e.snap.live, bm), nil
	case r.Tag != nil:
		kids := make([]*roaring.Bitmap, 0, len(r.Tag.TagIDs))
		for _, id := range r.Tag.TagIDs {
			kids = append(kids, orEmpty(e.snap.tags[id]))
		}
		if r.Tag.Match == enum.TagMatchAll {
			return roaring.FastAnd(kids...), nil
		}
		return roaring.FastOr(kids...), nil
	case r.Rfm != nil:
		segs := e.snap.rfm[r.Rfm.ModelID]
		kids := make([]*roaring.Bitmap, 0, len(r.Rfm.Segments))
		for _, seg := range r.Rfm.Segments {
			kids = append(kids, orEmpty(segs[seg]))
		}
		return roaring.FastOr(kids...), nil
	case r.Attribute != nil:
		return e.attribute(r.Attribute)
	default:
		return e.pre[r], nil
	}
}

func orEmpty(bm *roaring.Bitmap) *roaring.Bitmap {
	if bm == nil {
		return roaring.New()
	}
	return bm
}

// attribute evaluates one attribute test. Which operators each field
// takes:
//   - GENDER, CHANNEL, BUSINESS_UNIT (codes), LIFECYCLE: EQ, IN.
//   - REGION: EQ, IN with GB/T 2260 codes; trailing "00" pairs make a
//     prefix, so "310000" is all of Shanghai and "310100" its districts.
//   - TIER: codes; EQ, IN, and GTE / LTE / BETWEEN by tier rank.
//   - AGE (whole years today, from birth year and month), BIRTH_MONTH
//     (1-12; BETWEEN 11 and 2 wraps over the new year), REGISTERED_AT
//     (business dates YYYY-MM-DD): EQ, IN, BETWEEN (inclusive), GTE, LTE.
func (e *evaluator) attribute(a *rule.AttributeRule) (*roaring.Bitmap, error) {
	field := "rule.attribute.values"
	setOnly := func() error {
		if a.Op != enum.OpEq && a.Op != enum.OpIn {
			return fault.Invalidf("rule.attribute.op", "%s takes EQ or IN", a.Field)
		}
		return nil
	}
	switch a.Field {
	case enum.AttrGender:
		if err := setOnly(); err != nil {
			return nil, err
		}
		return unionOf(a.Values, func(v string) (*roaring.Bitmap, error) {
			if !enum.Valid(enum.Gender(v)) {
				return nil, fault.Invalidf(field, "%q is not a gender", v)
			}
			return e.snap.gender[enum.Gender(v)], nil
		})
	case enum.AttrChannel:
		if err := setOnly(); err != nil {
			return nil, err
		}
		return unionOf(a.Values, func(v string) (*roaring.Bitmap, error) {
			if !enum.Valid(enum.Channel(v)) {
				return nil, fault.Invalidf(field, "%q is not a channel", v)
			}
			return e.snap.channel[enum.Channel(v)], nil
		})
	case enum.AttrBusinessUnit:
		if err := setOnly(); err != nil {
			return nil, err
		}
		return unionOf(a.Values, func(v string) (*roaring.Bitmap, error) {
			id, ok := e.refs.buByCode[v]
			if !ok {
				return nil, fault.Invalidf(field, "no business unit has code %q", v)
			}
			return e.snap.bu[id], nil
		})
	case enum.AttrLifecycle:
		if err := setOnly(); err != nil {
			return nil, err
		}
		return unionOf(a.Values, func(v string) (*roaring.Bitmap, error) {
			if !enum.Valid(enum.LifecycleStage(v)) {
				return nil, fault.Invalidf(field, "%q is not a lifecycle stage", v)
			}
			return e.lifecycle()[enum.LifecycleStage(v)], nil
		})
	case enum.AttrRegion:
		if err := setOnly(); err != nil {
			return nil, err
		}
		return e.region(a.Values)
	case enum.AttrTier:
		return e.tier(a)
	}
	return e.scan(a)
}

func unionOf(values []string, one func(string) (*roaring.Bitmap, error)) (*roaring.Bitmap, error) {
	kids := make([]*roaring.Bitmap, 0, len(values))
	for _, v := range values {
		bm, err := one(v)
		if err != nil {
			return nil, err
		}
		kids = append(kids, orEmpty(bm))
	}
	return roaring.FastOr(kids...), nil
}

// RegionPrefix turns a GB/T 2260 code into the prefix it stands for.
func RegionPrefix(code string) string {
	for len(code) > 2 && strings.HasSuffix(code, "00") {
		code = code[:len(code)-2]
	}
	return code
}

func (e *evaluator) region(values []string) (*roaring.Bitmap, error) {
	var kids []*roaring.Bitmap
	for _, v := range values {
		if len(v) < 2 || strings.Trim(v, "0123456789") != "" {
			return nil, fault.Invalidf("rule.attribute.values", "%q is not a region code", v)
		}
		p := RegionPrefix(v)
		for code, bm := range e.snap.region {
			if strings.HasPrefix(code, p) {
				kids = append(kids, bm)
			}
		}
	}
	return roaring.FastOr(kids...), nil
}

func (e *evaluator) tier(a *rule.AttributeRule) (*roaring.Bitmap, error) {
	ranks := make([]int, 0, len(a.Values))
	for _, v := range a.Values {
		t, ok := e.refs.tierByCode[v]
		if !ok {
			return nil, fault.Invalidf("rule.attribute.values", "no tier has code %q", v)
		}
		ranks = append(ranks, t.rank)
	}
	var kids []*roaring.Bitmap
	for _, t := range e.refs.tierByCode {
		if matchInt(a.Op, t.rank, ranks) {
			kids = append(kids, orEmpty(e.snap.tier[t.id]))
		}
	}
	return roaring.FastOr(kids...), nil
}

// matchInt applies op to v; values were validated by rule.Validate.
func matchInt(op enum.RuleOp, v int, values []int) bool {
	switch op {
	case enum.OpEq, enum.OpIn:
		return slices.Contains(values, v)
	case enum.OpGte:
		return v >= values[0]
	case enum.OpLte:
		return v <= values[0]
	case enum.OpBetween:
		return v >= values[0] && v <= values[1]
	}
	return false
}

// scan evaluates AGE, BIRTH_MONTH and REGISTERED_AT over the per-member
// values.
func (e *evaluator) scan(a *rule.AttributeRule) (*roaring.Bitmap, error) {
	values := make([]int, len(a.Values))
	for i, v := range a.Values {
		var n int
		var err error
		if a.Field == enum.AttrRegisteredAt {
			var d calendar.Date
			d, err = calendar.Parse(v)
			n = int(dayNumber(d.Start(e.s.zone), e.s.zone))
		} else {
			n, err = strconv.Atoi(v)
		}
		if err != nil {
			return nil, fault.Invalidf("rule.attribute.values", "%q is not valid for %s", v, a.Field)
		}
		values[i] = n
	}
	y, m := e.today.Year, int(e.today.Month)
	out := roaring.New()
	at := e.snap.attrs
	at.mu.RLock()
	defer at.mu.RUnlock()
	it := e.snap.live.Iterator()
	for it.HasNext() {
		o := it.Next()
		if int(o) >= len(at.regDay) {
			break
		}
		var v int
		switch a.Field {
		case enum.AttrAge:
			if at.birthYear[o] == 0 {
				continue
			}
			v = y - int(at.birthYear[o])
			if int(at.birthMonth[o]) > m {
				v--
			}
		case enum.AttrBirthMonth:
			if at.birthMonth[o] == 0 {
				continue
			}
			v = int(at.birthMonth[o])
			if a.Op == enum.OpBetween && values[0] > values[1] {
				if v >= values[0] || v <= values[1] {
					out.Add(o)
				}
				continue
			}
		case enum.AttrRegisteredAt:
			v = int(at.regDay[o])
		}
		if matchInt(a.Op, v, values) {
			out.Add(o)
		}
	}
	return out, nil
}

// lifecycle splits the live members by lifecycle stage today
// (DOMAIN.md, Lifecycle; days are business days):
//   - no purchase: NEW when registered less than 30 days ago, else PROSPECT;
//   - last purchase less than 90 days ago: ACTIVE; 90 to 180 days: SLEEPING;
//     more than 180: CHURNED.
//
// A purchase is an order that is not fully refunded.
func (e *evaluator) lifecycle() map[enum.LifecycleStage]*roaring.Bitmap {
	if e.life == nil {
		e.life = e.s.lifecycleOf(e.snap, e.today)
	}
	return e.life
}

func (s *Service) lifecycleOf(snap *snapshot, today calendar.Date) map[enum.LifecycleStage]*roaring.Bitmap {
	key := lifeKey{version: snap.version, day: today}
	s.lifeMu.Lock()
	if s.lifeCache.key == key && s.lifeCache.stages != nil {
		out := s.lifeCache.stages
		s.lifeMu.Unlock()
		return out
	}
	s.lifeMu.Unlock()
	t := dayNumber(today.Start(s.zone), s.zone)
	stages := map[enum.LifecycleStage][]uint32{}
	snap.eachLive(func(o uint32, at *attrs) {
		st := StageOf(at.regDay[o], at.lastBuy[o], t)
		stages[st] = append(stages[st], o)
	})
	out := map[enum.LifecycleStage]*roaring.Bitmap{}
	for _, st := range []enum.LifecycleStage{enum.LifecycleNew, enum.LifecycleActive, enum.LifecycleSleeping, enum.LifecycleChurned, enum.LifecycleProspect} {
		out[st] = roaring.BitmapOf(stages[st]...)
	}
	s.lifeMu.Lock()
	s.lifeCache = lifeEntry{key: key, stages: out}
	s.lifeMu.Unlock()
	return out
}

type lifeKey struct {
	version uint64
	day     calendar.Date
}

type lifeEntry struct {
	key    lifeKey
	stages map[enum.LifecycleStage]*roaring.Bitmap
}

// StageOf is the lifecycle stage of a member registered on day reg whose
// last purchase was on day last (0: never), on day today.
func StageOf(reg, last, today int32) enum.LifecycleStage {
	switch {
	case last == 0 && today-reg < 30:
		return enum.LifecycleNew
	case last == 0:
		return enum.LifecycleProspect
	case today-last < 90:
		return enum.LifecycleActive
	case today-last <= 180:
		return enum.LifecycleSleeping
	}
	return enum.LifecycleChurned
}

// behaviorCacheTTL is how long a behaviour count or AIPL stage bitmap is
// reused: they come from SQL over millions of rows, and an operator
// composing a rule re-sends it at every keystroke.
const behaviorCacheTTL = time.Minute
