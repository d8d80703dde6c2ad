package audience_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/audience/rule"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// world is a seeded database with an audience service on it.
type world struct {
	db    *ent.Client
	sql   *sql.DB
	svc   *audience.Service
	ix    *audience.Index
	an    *analytics.Service
	clock *testkit.Clock
	zone  *time.Location
	tiers map[string]int
	bus   []int
	tags  []int
	rfm   int
}

func newWorld(t *testing.T, members int) *world {
	t.Helper()
	ctx := context.Background()
	client, sqlDB := testkit.EntClient(t, 16)
	zone := testkit.Shanghai(t)
	clock := testkit.NewClock(time.Now())
	w := &world{db: client, sql: sqlDB, clock: clock, zone: zone, tiers: map[string]int{}}
	w.an = analytics.New(client, sqlDB, zone, clock.Now)
	w.ix = audience.NewIndex(sqlDB, zone, clock.Now, audience.IndexOptions{Poll: 50 * time.Millisecond})
	jobs := jobqueue.New(client, slog.New(slog.NewTextHandler(io.Discard, nil)), jobqueue.Options{Now: clock.Now})
	w.svc = audience.New(audience.Deps{DB: client, SQL: sqlDB, Index: w.ix, Aipl: w.an, Jobs: jobs, Zone: zone, Now: clock.Now})

	for i, code := range []string{"SILVER", "GOLD", "PLATINUM"} {
		tr := client.Tier.Create().SetCode(code).SetName(code).SetRank(i + 1).SetThreshold(int64(i * 1000)).SaveX(ctx)
		w.tiers[code] = tr.ID
	}
	var stores []int
	for i := range 2 {
		bu := client.BusinessUnit.Create().SetCode(fmt.Sprintf("BU%d", i)).SetName("bu").SetKind("MALL").SaveX(ctx)
		w.bus = append(w.bus, bu.ID)
		stores = append(stores, client.Store.Create().SetCode(fmt.Sprintf("S%d", i)).SetName("s").SetBusinessUnitID(bu.ID).SaveX(ctx).ID)
	}
	for i := range 3 {
		w.tags = append(w.tags, client.Tag.Create().SetName(fmt.Sprintf("tag%d", i)).SaveX(ctx).ID)
	}
	r := rand.New(rand.NewPCG(7, 11))
	genders := []enum.Gender{enum.GenderMale, enum.GenderFemale, enum.GenderUnknown}
	channels := []enum.Channel{enum.ChannelPOS, enum.ChannelMiniProgram, enum.ChannelApp}
	regions := []string{"310101", "310115", "110105", "440305", ""}
	tierIDs := []int{0, w.tiers["SILVER"], w.tiers["GOLD"], w.tiers["PLATINUM"]}
	now := clock.Now()
	bulk := make([]*ent.MemberCreate, members)
	for i := range bulk {
		c := client.Member.Create().SetMemberNo(fmt.Sprintf("A%06d", i)).
			SetGender(genders[r.IntN(3)]).SetSourceChannel(channels[r.IntN(3)]).
			SetRegionCode(regions[r.IntN(len(regions))]).SetSourceBusinessUnitID(w.bus[r.IntN(2)]).
			SetRegisteredAt(now.Add(-time.Duration(r.IntN(400*24)) * time.Hour))
		if r.IntN(5) > 0 {
			c.SetBirthYear(1960 + r.IntN(50)).SetBirthMonth(1 + r.IntN(12))
		}
		if tid := tierIDs[r.IntN(4)]; tid != 0 {
			c.SetTierID(tid)
		}
		switch r.IntN(20) {
		case 0:
			c.SetStatus("FROZEN")
		case 1:
			c.SetStatus("ERASED")
		}
		bulk[i] = c
	}
	ms := client.Member.CreateBulk(bulk...).SaveX(ctx)
	var orderRows [][]any
	for i, m := range ms {
		for range r.IntN(6) {
			status := "PAID"
			if r.IntN(8) == 0 {
				status = "REFUNDED"
			}
			s := r.IntN(2)
			orderRows = append(orderRows, []any{fmt.Sprintf("o%d-%d", i, len(orderRows)), m.ID, status,
				int64(1000 + r.IntN(90000)), now.Add(-time.Duration(r.IntN(300*24)) * time.Hour), stores[s], w.bus[s]})
		}
		for tg := range w.tags {
			if r.IntN(3) == 0 {
				mustExec(t, sqlDB, `INSERT INTO member_tags (tag_id, member_id) VALUES ($1, $2)`, w.tags[tg], m.ID)
			}
		}
		for range r.IntN(4) {
			mustExec(t, sqlDB, `INSERT INTO behavior_events (member_id, kind, occurred_at, channel, source, event_id)
VALUES ($1, $2, $3, 'APP', 's', $4)`, m.ID, []string{"VIEW", "FAVORITE", "SHARE"}[r.IntN(3)],
				now.Add(-time.Duration(r.IntN(60*24))*time.Hour), fmt.Sprintf("e%d", r.Int64()))
		}
	}
	for _, o := range orderRows {
		mustExec(t, sqlDB, `INSERT INTO orders (external_id, channel, member_id, status, amount, paid_at, created_at, store_id, business_unit_id)
VALUES ($1, 'POS', $2, $3, $4, $5, now(), $6, $7)`, o...)
	}
	model, err := w.an.CreateRfmModel(ctx, analytics.CreateRfmInput{Name: "rfm", WindowDays: 365, Split: analytics.RfmSplit{Mode: enum.RfmSplitMean}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.an.ComputeRfm(ctx, model.ID); err != nil {
		t.Fatal(err)
	}
	w.rfm = model.ID
	if err := w.ix.Build(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// sqlSet runs a query answering member ids.
func sqlSet(t testing.TB, db *sql.DB, q string, args ...any) []int {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func idsOf(bm *roaring.Bitmap) []int {
	out := []int{}
	it := bm.Iterator()
	for it.HasNext() {
		out = append(out, audience.MemberID(it.Next()))
	}
	return out
}

func (w *world) eval(t *testing.T, r *rule.Rule) []int {
	t.Helper()
	bm, err := w.svc.Evaluate(context.Background(), r)
	if err != nil {
		t.Fatalf("evaluating: %v", err)
	}
	return idsOf(bm)
}

func same(t *testing.T, what string, got, want []int) {
	t.Helper()
	if want == nil {
		want = []int{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: engine %d members, SQL %d members (engine first %v, SQL first %v)", what, len(got), len(want), head(got), head(want))
	}
}

func head(s []int) []int { return s[:min(5, len(s))] }

// lifecycleSQL is DOMAIN.md's lifecycle in plain SQL, days in the zone.
const lifecycleSQL = `
WITH x AS (
  SELECT m.id,
    ($1::date - (m.registered_at AT TIME ZONE 'Asia/Shanghai')::date) AS reg_days,
    ($1::date - ((SELECT max(paid_at) FROM orders o WHERE o.member_id = m.id AND o.status <> 'REFUNDED') AT TIME ZONE 'Asia/Shanghai')::date) AS buy_days
  FROM members m WHERE m.status = 'ACTIVE')
SELECT id FROM x WHERE CASE
  WHEN buy_days IS NULL AND reg_days < 30 THEN 'NEW'
  WHEN buy_days IS NULL THEN 'PROSPECT'
  WHEN buy_days < 90 THEN 'ACTIVE'
  WHEN buy_days <= 180 THEN 'SLEEPING'
  ELSE 'CHURNED' END = $2 ORDER BY id`

func TestRulesAgreeWithSQL(t *testing.T) {
	w := newWorld(t, 600)
	ctx := context.Background()
	today := w.clock.Now().In(w.zone).Format("2006-01-02")
	saved, err := w.svc.Create(ctx, audience.CreateInput{Name: "tag2", Rule: &rule.Rule{Tag: &rule.TagRule{TagIDs: []int{w.tags[2]}, Match: enum.TagMatchAny}}})
	if err != nil {
		t.Fatal(err)
	}
	same(t, "saved audience", w.eval(t, &rule.Rule{Audience: &saved.ID}),
		sqlSet(t, w.sql, `SELECT member_id FROM member_tags mt JOIN members m ON m.id = mt.member_id WHERE tag_id = $1 AND m.status = 'ACTIVE'`, w.tags[2]))

	// The benchmark's five operands: two tags ANY, a tier, an RFM segment,
	// NOT a saved audience.
	five := &rule.Rule{And: []*rule.Rule{
		{Tag: &rule.TagRule{TagIDs: []int{w.tags[0], w.tags[1]}, Match: enum.TagMatchAny}},
		{Attribute: &rule.AttributeRule{Field: enum.AttrTier, Op: enum.OpIn, Values: []string{"GOLD", "PLATINUM"}}},
		{Rfm: &rule.RfmRule{ModelID: w.rfm, Segments: []enum.RfmSegment{enum.RfmImportantValue, enum.RfmGeneralValue}}},
		{Not: &rule.Rule{Audience: &saved.ID}},
	}}
	want := sqlSet(t, w.sql, `SELECT m.id FROM members m JOIN tiers t ON t.id = m.tier_id
WHERE m.status = 'ACTIVE' AND t.code IN ('GOLD', 'PLATINUM')
AND EXISTS (SELECT 1 FROM member_tags mt WHERE mt.member_id = m.id AND mt.tag_id IN ($1, $2))
AND EXISTS (SELECT 1 FROM rfm_results r WHERE r.member_id = m.id AND r.model_id = $3 AND r.segment IN ('IMPORTANT_VALUE', 'GENERAL_VALUE'))
AND NOT EXISTS (SELECT 1 FROM member_tags mt WHERE mt.member_id = m.id AND mt.tag_id = $4)`, w.tags[0], w.tags[1], w.rfm, w.tags[2])
	if len(want) == 0 {
		t.Fatal("the seed gives the five-operand rule no members; the comparison would prove nothing")
	}
	same(t, "five operands", w.eval(t, five), want)

	cases := []struct {
		name string
		rule *rule.Rule
		sql  string
		args []any
	}{
		{"tags ALL", &rule.Rule{Tag: &rule.TagRule{TagIDs: []int{w.tags[0], w.tags[1]}, Match: enum.TagMatchAll}},
			`SELECT m.id FROM members m WHERE m.status = 'ACTIVE' AND (SELECT count(*) FROM member_tags mt WHERE mt.member_id = m.id AND mt.tag_id IN ($1, $2)) = 2`,
			[]any{w.tags[0], w.tags[1]}},
		{"gender OR channel", &rule.Rule{Or: []*rule.Rule{
			{Attribute: &rule.AttributeRule{Field: enum.AttrGender, Op: enum.OpEq, Values: []string{"FEMALE"}}},
			{Attribute: &rule.AttributeRule{Field: enum.AttrChannel, Op: enum.OpIn, Values: []string{"APP"}}}}},
			`SELECT id FROM members WHERE status = 'ACTIVE' AND (gender = 'FEMALE' OR source_channel = 'APP')`, nil},
		{"region prefix", &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrRegion, Op: enum.OpIn, Values: []string{"310000", "440305"}}},
			`SELECT id FROM members WHERE status = 'ACTIVE' AND (region_code LIKE '31%' OR region_code = '440305')`, nil},
		{"tier at least GOLD", &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrTier, Op: enum.OpGte, Values: []string{"GOLD"}}},
			`SELECT m.id FROM members m JOIN tiers t ON t.id = m.tier_id WHERE m.status = 'ACTIVE' AND t.rank >= 2`, nil},
		{"business unit", &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrBusinessUnit, Op: enum.OpEq, Values: []string{"BU1"}}},
			`SELECT id FROM members WHERE status = 'ACTIVE' AND source_business_unit_id = $1`, []any{w.bus[1]}},
		{"age 30 to 45", &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrAge, Op: enum.OpBetween, Values: []string{"30", "45"}}},
			`SELECT id FROM members WHERE status = 'ACTIVE' AND birth_year IS NOT NULL AND
 (extract(year FROM $1::date)::int - birth_year - CASE WHEN birth_month > extract(month FROM $1::date) THEN 1 ELSE 0 END) BETWEEN 30 AND 45`, []any{today}},
		{"birth month wraps", &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrBirthMonth, Op: enum.OpBetween, Values: []string{"11", "2"}}},
			`SELECT id FROM members WHERE status = 'ACTIVE' AND birth_month IN (11, 12, 1, 2)`, nil},
		{"registered since", &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrRegisteredAt, Op: enum.OpGte,
			Values: []string{w.clock.Now().In(w.zone).AddDate(0, 0, -100).Format("2006-01-02")}}},
			`SELECT id FROM members WHERE status = 'ACTIVE' AND (registered_at AT TIME ZONE 'Asia/Shanghai')::date >= $1::date - 100`, []any{today}},
		{"not a tag", &rule.Rule{Not: &rule.Rule{Tag: &rule.TagRule{TagIDs: []int{w.tags[0]}, Match: enum.TagMatchAny}}},
			`SELECT m.id FROM members m WHERE m.status = 'ACTIVE' AND NOT EXISTS (SELECT 1 FROM member_tags mt WHERE mt.member_id = m.id AND mt.tag_id = $1)`, []any{w.tags[0]}},
		{"two purchases in 90 days", &rule.Rule{Behavior: &rule.BehaviorRule{Kind: enum.BehaviorPurchase, WithinDays: 90, MinCount: 2}},
			`SELECT m.id FROM members m WHERE m.status = 'ACTIVE' AND (SELECT count(*) FROM orders o WHERE o.member_id = m.id
 AND o.status <> 'REFUNDED' AND o.paid_at > $1) >= 2`, []any{w.clock.Now().Add(-90 * 24 * time.Hour)}},
		{"shared in 30 days", &rule.Rule{Behavior: &rule.BehaviorRule{Kind: enum.BehaviorShare, WithinDays: 30, MinCount: 1}},
			`SELECT DISTINCT m.id FROM members m JOIN behavior_events e ON e.member_id = m.id WHERE m.status = 'ACTIVE'
 AND e.kind = 'SHARE' AND e.occurred_at > $1`, []any{w.clock.Now().Add(-30 * 24 * time.Hour)}},
	}
	for _, st := range enum.LifecycleStage("").Values() {
		cases = append(cases, struct {
			name string
			rule *rule.Rule
			sql  string
			args []any
		}{"lifecycle " + st, &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrLifecycle, Op: enum.OpEq, Values: []string{st}}},
			lifecycleSQL, []any{today, st}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			same(t, c.name, w.eval(t, c.rule), sqlSet(t, w.sql, c.sql, c.args...))
		})
	}

	stats, err := w.svc.LifecycleStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stats {
		if n := len(sqlSet(t, w.sql, lifecycleSQL, today, string(s.Stage))); int64(n) != s.Members {
			t.Errorf("lifecycle stats %s: %d, SQL %d", s.Stage, s.Members, n)
		}
	}
}

func TestBadRules(t *testing.T) {
	w := newWorld(t, 20)
	missing := 123
	for name, c := range map[string]struct {
		rule *rule.Rule
		code fault.Code
	}{
		"two fields in a node": {&rule.Rule{Not: &rule.Rule{}, Audience: &missing}, fault.BadUserInput},
		"unknown tier":         {&rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrTier, Op: enum.OpEq, Values: []string{"DIAMOND"}}}, fault.BadUserInput},
		"gender with GTE":      {&rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrGender, Op: enum.OpGte, Values: []string{"MALE"}}}, fault.BadUserInput},
		"BETWEEN one value":    {&rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrAge, Op: enum.OpBetween, Values: []string{"3"}}}, fault.BadUserInput},
		"missing audience":     {&rule.Rule{Audience: &missing}, fault.NotFound},
		"missing tag":          {&rule.Rule{Tag: &rule.TagRule{TagIDs: []int{missing}, Match: enum.TagMatchAny}}, fault.NotFound},
		"empty and":            {&rule.Rule{And: []*rule.Rule{}}, fault.BadUserInput},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := w.svc.Evaluate(context.Background(), c.rule)
			if got := fault.CodeOf(err); got != c.code {
				t.Fatalf("code %s, want %s (%v)", got, c.code, err)
			}
		})
	}
}

// Changes reach the index by replaying member_changes; a transaction that
// commits after a later one is not skipped.
func TestIndexFollowsChanges(t *testing.T) {
	w := newWorld(t, 200)
	ctx := context.Background()
	gold := &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrTier, Op: enum.OpEq, Values: []string{"GOLD"}}}
	tag0 := &rule.Rule{Tag: &rule.TagRule{TagIDs: []int{w.tags[0]}, Match: enum.TagMatchAny}}
	active := &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrLifecycle, Op: enum.OpEq, Values: []string{"ACTIVE"}}}
	check := func(when string) {
		t.Helper()
		if _, err := w.ix.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		same(t, when+": gold", w.eval(t, gold), sqlSet(t, w.sql, `SELECT m.id FROM members m JOIN tiers t ON t.id = m.tier_id WHERE m.status = 'ACTIVE' AND t.code = 'GOLD'`))
		same(t, when+": tag", w.eval(t, tag0), sqlSet(t, w.sql, `SELECT m.id FROM members m JOIN member_tags mt ON mt.member_id = m.id WHERE m.status = 'ACTIVE' AND mt.tag_id = $1`, w.tags[0]))
		same(t, when+": active", w.eval(t, active), sqlSet(t, w.sql, lifecycleSQL, w.clock.Now().In(w.zone).Format("2006-01-02"), "ACTIVE"))
	}
	ids := sqlSet(t, w.sql, `SELECT id FROM members WHERE status = 'ACTIVE' ORDER BY id LIMIT 20`)

	// A transaction left open while later ones commit.
	late, err := w.sql.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.Exec(`UPDATE members SET tier_id = $1 WHERE id = $2`, w.tiers["GOLD"], ids[0]); err != nil {
		t.Fatal(err)
	}
	mustExec(t, w.sql, `UPDATE members SET tier_id = $1 WHERE id = ANY($2)`, w.tiers["GOLD"], pq.Array(ids[1:5]))
	mustExec(t, w.sql, `UPDATE members SET status = 'FROZEN' WHERE id = $1`, ids[5])
	if _, err := w.svc.Assign(ctx, ids[6:10], []int{w.tags[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.Unassign(ctx, ids[10:15], []int{w.tags[0]}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, w.sql, `INSERT INTO orders (external_id, channel, member_id, status, amount, paid_at, created_at, store_id, business_unit_id)
SELECT 'new-' || m, 'POS', m, 'PAID', 100, now(), now(), (SELECT min(id) FROM stores), $2 FROM unnest($1::bigint[]) AS m`, pq.Array(ids[15:20]), w.bus[0])
	check("with a transaction open")
	if err := late.Commit(); err != nil {
		t.Fatal(err)
	}
	check("after the late commit")

	// A bulk tag write (over the trigger's per-member threshold) reloads
	// the whole tag.
	mustExec(t, w.sql, `INSERT INTO member_tags (tag_id, member_id) SELECT $1, id FROM members ON CONFLICT DO NOTHING`, w.tags[0])
	check("after a bulk tag write")
	m := w.db.Member.Create().SetMemberNo("NEW1").SetSourceChannel(enum.ChannelApp).SetTierID(w.tiers["GOLD"]).SaveX(ctx)
	check("after a new member")
	if !slices.Contains(w.eval(t, gold), m.ID) {
		t.Fatal("the new member is not in the index")
	}
}

func TestAudienceCyclesAndPriority(t *testing.T) {
	w := newWorld(t, 50)
	ctx := context.Background()
	tagRule := func(i int) *rule.Rule {
		return &rule.Rule{Tag: &rule.TagRule{TagIDs: []int{w.tags[i]}, Match: enum.TagMatchAny}}
	}
	a, err := w.svc.Create(ctx, audience.CreateInput{Name: "a", Rule: tagRule(0), Priority: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.svc.Create(ctx, audience.CreateInput{Name: "b", Rule: &rule.Rule{Or: []*rule.Rule{{Audience: &a.ID}, tagRule(1)}}, Priority: 5})
	if err != nil {
		t.Fatal(err)
	}
	c, err := w.svc.Create(ctx, audience.CreateInput{Name: "c", Rule: &rule.Rule{And: []*rule.Rule{{Audience: &b.ID}, {Not: tagRule(2)}}}})
	if err != nil {
		t.Fatal(err)
	}
	// a → c → b → a is a cycle.
	_, err = w.svc.Update(ctx, a.ID, audience.CreateInput{Name: "a", Rule: &rule.Rule{Audience: &c.ID}})
	if fault.CodeOf(err) != fault.BadUserInput {
		t.Fatalf("cycle: %v", err)
	}
	_, err = w.svc.Update(ctx, a.ID, audience.CreateInput{Name: "a", Rule: &rule.Rule{Audience: &a.ID}})
	if fault.CodeOf(err) != fault.BadUserInput {
		t.Fatalf("self reference: %v", err)
	}
	_, err = w.svc.Create(ctx, audience.CreateInput{Name: "a", Rule: tagRule(0)})
	if fault.CodeOf(err) != fault.Conflict {
		t.Fatalf("duplicate name: %v", err)
	}
	if b.Size < a.Size || c.Size > b.Size {
		t.Fatalf("sizes a %d b %d c %d: b is a superset of a, c a subset of b", a.Size, b.Size, c.Size)
	}
	// A member of a and b: b has the higher priority.
	in := sqlSet(t, w.sql, `SELECT m.id FROM members m JOIN member_tags mt ON mt.member_id = m.id WHERE m.status = 'ACTIVE' AND mt.tag_id = $1`, w.tags[0])
	if len(in) == 0 {
		t.Skip("no member holds tag 0")
	}
	of, err := w.svc.Of(ctx, in[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(of) < 2 || of[0].ID != b.ID {
		t.Fatalf("audiences of a member in a and b: %v", of)
	}
}

func TestInsightSumsToSize(t *testing.T) {
	w := newWorld(t, 300)
	ctx := context.Background()
	p, err := w.svc.Preview(ctx, &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrGender, Op: enum.OpIn, Values: []string{"MALE", "FEMALE"}}})
	if err != nil {
		t.Fatal(err)
	}
	in, err := w.svc.Insight(ctx, p.Members)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(p.Members.GetCardinality())
	for name, d := range map[string][]audience.Distribution{"gender": in.Gender, "age": in.AgeBand, "region": in.Region,
		"tier": in.Tier, "channel": in.Channel, "lifecycle": in.Lifecycle} {
		var sum int64
		for _, x := range d {
			sum += x.Count
		}
		if sum != size {
			t.Errorf("%s sums to %d, audience has %d", name, sum, size)
		}
	}
	if in.Gender[2].Count != 0 {
		t.Errorf("UNKNOWN gender in a MALE/FEMALE audience: %d", in.Gender[2].Count)
	}
}

// ON_CHANGE audiences follow the index; DAILY ones get one refresh job a
// day.
func TestRefreshDue(t *testing.T) {
	w := newWorld(t, 60)
	ctx := context.Background()
	r := &rule.Rule{Tag: &rule.TagRule{TagIDs: []int{w.tags[1]}, Match: enum.TagMatchAny}}
	live, err := w.svc.Create(ctx, audience.CreateInput{Name: "live", Rule: r, Refresh: enum.RefreshOnChange})
	if err != nil {
		t.Fatal(err)
	}
	daily, err := w.svc.Create(ctx, audience.CreateInput{Name: "daily", Rule: r, Refresh: enum.RefreshDaily})
	if err != nil {
		t.Fatal(err)
	}
	outside := sqlSet(t, w.sql, `SELECT m.id FROM members m WHERE m.status = 'ACTIVE' AND NOT EXISTS
 (SELECT 1 FROM member_tags mt WHERE mt.member_id = m.id AND mt.tag_id = $1) LIMIT 3`, w.tags[1])
	if _, err := w.svc.Assign(ctx, outside, []int{w.tags[1]}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ix.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.RefreshDue(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.db.Audience.GetX(ctx, live.ID).Size; got != live.Size+3 {
		t.Fatalf("ON_CHANGE audience: %d members, want %d", got, live.Size+3)
	}
	if got := w.db.Audience.GetX(ctx, daily.ID).Size; got != daily.Size {
		t.Fatalf("DAILY audience changed before its day: %d, want %d", got, daily.Size)
	}
	if n := w.db.Job.Query().CountX(ctx); n != 0 {
		t.Fatalf("%d refresh jobs on the day of computing", n)
	}
	w.clock.Advance(24 * time.Hour)
	for range 2 { // twice: still one job
		if _, err := w.svc.RefreshDue(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.db.Job.Query().CountX(ctx); n != 1 {
		t.Fatalf("%d refresh jobs the next day, want 1", n)
	}
}

// A rule tag is saved with its first REFRESH_TAG job, in one transaction;
// a rule that does not evaluate saves neither.
func TestRuleTagQueuesItsRefresh(t *testing.T) {
	w := newWorld(t, 20)
	ctx := context.Background()
	gold := &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrTier, Op: enum.OpEq, Values: []string{"GOLD"}}}
	tag, err := w.svc.CreateTag(ctx, audience.CreateTagInput{Name: "gold", Rule: gold}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jobs := w.db.Job.Query().AllX(ctx)
	if len(jobs) != 1 || jobs[0].Kind != enum.JobRefreshTag || int(jobs[0].Params["tagId"].(float64)) != tag.ID {
		t.Fatalf("jobs after creating a rule tag: %+v", jobs)
	}
	bad := &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrTier, Op: enum.OpEq, Values: []string{"NOPE"}}}
	if _, err := w.svc.CreateTag(ctx, audience.CreateTagInput{Name: "bad", Rule: bad}, nil); fault.CodeOf(err) != fault.BadUserInput {
		t.Fatalf("bad rule: %v", err)
	}
	if n := w.db.Tag.Query().CountX(ctx); n != 4 { // the world's three and gold
		t.Fatalf("%d tags, want 4", n)
	}
}
