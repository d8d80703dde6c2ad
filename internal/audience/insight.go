package audience

import (
	"cmp"
	"context"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
)

// Distribution is one bucket of an insight.
type Distribution struct {
	Key   string
	Count int64
	Share float64
}

// Insight is an audience's make-up by attribute, over its members that
// are still active, with their attributes as they are now.
type Insight struct {
	Gender, AgeBand, Region, Tier, Channel, Lifecycle []Distribution
}

// ageBands are the insight's age buckets (lower bounds).
var ageBands = []struct {
	key string
	min int
}{{"<18", 0}, {"18-24", 18}, {"25-34", 25}, {"35-44", 35}, {"45-54", 45}, {"55+", 55}}

// Insight computes the distributions of members (ordinals) by gender,
// age band, province, tier (code; NONE without), source channel and
// lifecycle stage. Buckets follow enum order; regions go by size.
func (s *Service) Insight(ctx context.Context, members *roaring.Bitmap) (*Insight, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	snap := s.index.snap()
	bm := roaring.And(members, snap.live)
	total := bm.GetCardinality()
	dist := func(key string, n uint64) Distribution {
		return Distribution{Key: key, Count: int64(n), Share: share(n, total)}
	}
	out := &Insight{}
	for _, g := range []enum.Gender{enum.GenderMale, enum.GenderFemale, enum.GenderUnknown} {
		out.Gender = append(out.Gender, dist(string(g), andCard(bm, snap.gender[g])))
	}
	for _, c := range enum.Channel("").Values() {
		out.Channel = append(out.Channel, dist(c, andCard(bm, snap.channel[enum.Channel(c)])))
	}
	today := calendar.In(s.now(), s.zone)
	for _, st := range []enum.LifecycleStage{enum.LifecycleNew, enum.LifecycleActive, enum.LifecycleSleeping, enum.LifecycleChurned, enum.LifecycleProspect} {
		out.Lifecycle = append(out.Lifecycle, dist(string(st), andCard(bm, s.lifecycleOf(snap, today)[st])))
	}
	tiers, err := s.tierCodes(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tiers {
		out.Tier = append(out.Tier, dist(t.code, andCard(bm, snap.tier[t.id])))
	}
	out.Tier = append(out.Tier, dist("NONE", andCard(bm, snap.tier[0])))

	provinces := map[string]uint64{}
	for code, rb := range snap.region {
		key := "UNKNOWN"
		if len(code) >= 2 {
			key = code[:2] + "0000"
		}
		provinces[key] += andCard(bm, rb)
	}
	for k, n := range provinces {
		if n > 0 {
			out.Region = append(out.Region, dist(k, n))
		}
	}
	slices.SortFunc(out.Region, func(a, b Distribution) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Key, b.Key))
	})

	bands := make([]uint64, len(ageBands)+1)
	y, m := today.Year, int(today.Month)
	at := snap.attrs
	at.mu.RLock()
	it := bm.Iterator()
	for it.HasNext() {
		o := it.Next()
		if int(o) >= len(at.birthYear) || at.birthYear[o] == 0 {
			bands[len(ageBands)]++
			continue
		}
		age := y - int(at.birthYear[o])
		if int(at.birthMonth[o]) > m {
			age--
		}
		i := len(ageBands) - 1
		for i > 0 && age < ageBands[i].min {
			i--
		}
		bands[i]++
	}
	at.mu.RUnlock()
	for i, b := range ageBands {
		out.AgeBand = append(out.AgeBand, dist(b.key, bands[i]))
	}
	out.AgeBand = append(out.AgeBand, dist("UNKNOWN", bands[len(ageBands)]))
	return out, nil
}

func andCard(a, b *roaring.Bitmap) uint64 {
	if b == nil {
		return 0
	}
	return a.AndCardinality(b)
}

type tierCode struct {
	id   int
	code string
}

func (s *Service) tierCodes(ctx context.Context) ([]tierCode, error) {
	rows, err := s.sql.QueryContext(ctx, `SELECT id, code FROM tiers ORDER BY rank`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tierCode
	for rows.Next() {
		var t tierCode
		if err := rows.Scan(&t.id, &t.code); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
