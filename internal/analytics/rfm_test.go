package analytics_test

import (
	"context"
	"math"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	entorder "github.com/onemember/onemember/ent/order"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/platform/fault"
)

// rfmRow is a member's expected result.
type rfmRow struct {
	recency, frequency int
	monetary           int64
	segment            enum.RfmSegment
}

// segmentTable is DOMAIN.md's table, keyed by R, F, M high.
var segmentTable = map[[3]bool]enum.RfmSegment{
	{true, true, true}:    enum.RfmImportantValue,
	{false, true, true}:   enum.RfmImportantKeep,
	{true, false, true}:   enum.RfmImportantDevelop,
	{false, false, true}:  enum.RfmImportantRetain,
	{true, true, false}:   enum.RfmGeneralValue,
	{false, true, false}:  enum.RfmGeneralKeep,
	{true, false, false}:  enum.RfmGeneralDevelop,
	{false, false, false}: enum.RfmGeneralRetain,
}

// dayNumber counts days in the zone: the difference of two day numbers is
// the number of calendar days between them.
func dayNumber(t time.Time, zone *time.Location) int {
	y, m, d := t.In(zone).Date()
	return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// median is percentile_cont(0.5) of vs.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func mean(vs []float64) float64 {
	var sum float64
	for _, v := range vs {
		sum += v
	}
	return sum / float64(len(vs))
}

// expectRfm computes the model's results in plain Go over the rows read
// back from the database.
func expectRfm(snap snapshot, m *ent.RfmModel, now time.Time, zone *time.Location) (map[int]rfmRow, [3]float64) {
	since := now.In(zone).AddDate(0, 0, -m.WindowDays)
	type acc struct {
		last time.Time
		n    int
		sum  int64
	}
	accs := map[int]*acc{}
	for _, o := range snap.orders {
		if o.Status == entorder.StatusREFUNDED || !o.PaidAt.After(since) {
			continue
		}
		if len(m.BusinessUnitIds) > 0 && !slices.Contains(m.BusinessUnitIds, o.BusinessUnitID) {
			continue
		}
		if len(m.Channels) > 0 && !slices.Contains(m.Channels, o.Channel) {
			continue
		}
		if !counted(snap.members[o.MemberID].Status) {
			continue
		}
		a := accs[o.MemberID]
		if a == nil {
			a = &acc{}
			accs[o.MemberID] = a
		}
		if o.PaidAt.After(a.last) {
			a.last = o.PaidAt
		}
		a.n++
		a.sum += o.Amount - o.RefundedAmount
	}
	rows := map[int]rfmRow{}
	var rs, fs, ms []float64
	for id, a := range accs {
		r := rfmRow{recency: dayNumber(now, zone) - dayNumber(a.last, zone), frequency: a.n, monetary: a.sum}
		rows[id] = r
		rs, fs, ms = append(rs, float64(r.recency)), append(fs, float64(r.frequency)), append(ms, float64(r.monetary))
	}
	var th [3]float64
	switch m.SplitMode {
	case enum.RfmSplitMean:
		th = [3]float64{mean(rs), mean(fs), mean(ms)}
	case enum.RfmSplitMedian:
		th = [3]float64{median(rs), median(fs), median(ms)}
	case enum.RfmSplitCustom:
		th = [3]float64{*m.CustomRecencyDays, *m.CustomFrequency, float64(*m.CustomMonetary)}
	}
	for id, r := range rows {
		r.segment = segmentTable[[3]bool{float64(r.recency) <= th[0], float64(r.frequency) >= th[1], float64(r.monetary) >= th[2]}]
		rows[id] = r
	}
	return rows, th
}

// storedRfm reads the model's rfm_results.
func (w *world) storedRfm(t *testing.T, modelID int) map[int]rfmRow {
	t.Helper()
	rows, err := w.sql.QueryContext(context.Background(),
		`SELECT member_id, recency_days, frequency, monetary, segment FROM rfm_results WHERE model_id = $1`, modelID)
	if err != nil {
		t.Fatalf("reading results: %v", err)
	}
	defer rows.Close()
	out := map[int]rfmRow{}
	for rows.Next() {
		var id int
		var r rfmRow
		if err := rows.Scan(&id, &r.recency, &r.frequency, &r.monetary, &r.segment); err != nil {
			t.Fatalf("reading results: %v", err)
		}
		out[id] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading results: %v", err)
	}
	return out
}

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// checkRfm computes the model and compares every member's row, the
// thresholds and the segment report with expectRfm.
func (w *world) checkRfm(t *testing.T, modelID int) map[int]rfmRow {
	t.Helper()
	n, err := w.svc.ComputeRfm(context.Background(), modelID)
	if err != nil {
		t.Fatalf("computing: %v", err)
	}
	m, err := w.db.RfmModel.Get(context.Background(), modelID)
	if err != nil {
		t.Fatalf("reading model: %v", err)
	}
	want, th := expectRfm(w.read(t), m, w.clock.Now(), w.zone)
	if n != int64(len(want)) {
		t.Errorf("%s: ComputeRfm = %d, want %d members", m.Name, n, len(want))
	}
	if len(want) < 20 {
		t.Fatalf("%s: only %d members with a result; the seed is too thin to test anything", m.Name, len(want))
	}
	got := w.storedRfm(t, modelID)
	if len(got) != len(want) {
		t.Errorf("%s: %d results stored, want %d", m.Name, len(got), len(want))
	}
	for id, wr := range want {
		if gr, ok := got[id]; !ok || gr != wr {
			t.Errorf("%s: member %d: got %+v (stored %v), want %+v", m.Name, id, gr, ok, wr)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: member %d has a result but should not", m.Name, id)
		}
	}
	if m.ThresholdRecencyDays == nil || m.ThresholdFrequency == nil || m.ThresholdMonetary == nil || m.ComputedAt == nil {
		t.Fatalf("%s: thresholds or computed_at not stored: %+v", m.Name, m)
	}
	gotTh := [3]float64{*m.ThresholdRecencyDays, *m.ThresholdFrequency, *m.ThresholdMonetary}
	for i := range gotTh {
		if !closeTo(gotTh[i], th[i]) {
			t.Errorf("%s: thresholds %v, want %v", m.Name, gotTh, th)
			break
		}
	}
	if !m.ComputedAt.Equal(w.clock.Now()) {
		t.Errorf("%s: computed_at %v, want %v", m.Name, m.ComputedAt, w.clock.Now())
	}
	w.checkSegments(t, modelID, want)
	return want
}

// checkSegments compares RfmSegments with the segment sums of want.
func (w *world) checkSegments(t *testing.T, modelID int, want map[int]rfmRow) {
	t.Helper()
	stats, err := w.svc.RfmSegments(context.Background(), modelID)
	if err != nil {
		t.Fatalf("segments: %v", err)
	}
	type sums struct {
		n         int64
		r, f, mon int64
	}
	by := map[enum.RfmSegment]*sums{}
	for _, r := range want {
		s := by[r.segment]
		if s == nil {
			s = &sums{}
			by[r.segment] = s
		}
		s.n++
		s.r += int64(r.recency)
		s.f += int64(r.frequency)
		s.mon += r.monetary
	}
	if len(stats) != 8 {
		t.Fatalf("%d segments, want 8", len(stats))
	}
	var total int64
	var share float64
	nonEmpty := 0
	for i, st := range stats {
		if st.Segment != enum.RfmSegment(enum.RfmSegment("").Values()[i]) {
			t.Errorf("segment %d is %s, want enum order", i, st.Segment)
		}
		total += st.Members
		share += st.Share
		s := by[st.Segment]
		if s == nil {
			if st.Members != 0 || st.Share != 0 || st.AvgMonetary != 0 || st.AvgFrequency != 0 || st.AvgRecencyDays != 0 {
				t.Errorf("empty segment %s reported %+v", st.Segment, st)
			}
			continue
		}
		nonEmpty++
		// Rounded half away from zero, in integers (the sums are not
		// negative).
		avgM := s.mon / s.n
		if 2*(s.mon%s.n) >= s.n {
			avgM++
		}
		if st.Members != s.n || !closeTo(st.Share, float64(s.n)/float64(len(want))) ||
			!closeTo(st.AvgRecencyDays, float64(s.r)/float64(s.n)) ||
			!closeTo(st.AvgFrequency, float64(s.f)/float64(s.n)) || st.AvgMonetary != avgM {
			t.Errorf("segment %s: got %+v, want n=%d avg r=%v f=%v m=%d", st.Segment, st,
				s.n, float64(s.r)/float64(s.n), float64(s.f)/float64(s.n), avgM)
		}
	}
	if total != int64(len(want)) || (total > 0 && !closeTo(share, 1)) {
		t.Errorf("segments sum to %d members (share %v), want %d", total, share, len(want))
	}
	if nonEmpty < 3 {
		t.Errorf("only %d non-empty segments: the seed does not exercise the split", nonEmpty)
	}
}

func (w *world) rfmModel(t *testing.T, in analytics.CreateRfmInput) *ent.RfmModel {
	t.Helper()
	m, err := w.svc.CreateRfmModel(context.Background(), in)
	if err != nil {
		t.Fatalf("creating model %s: %v", in.Name, err)
	}
	return m
}

func TestComputeRfm(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.seed(t)
	ctx := context.Background()

	mean := w.rfmModel(t, analytics.CreateRfmInput{Name: "mean", WindowDays: 365, Split: analytics.RfmSplit{Mode: enum.RfmSplitMean}})
	median := w.rfmModel(t, analytics.CreateRfmInput{Name: "median", WindowDays: 180, Split: analytics.RfmSplit{Mode: enum.RfmSplitMedian}})
	custom := w.rfmModel(t, analytics.CreateRfmInput{Name: "custom", WindowDays: 365, Split: analytics.RfmSplit{
		Mode: enum.RfmSplitCustom, RecencyDays: ptr(60), Frequency: ptr(7.0), Monetary: ptr[int64](300000)}})
	scoped := w.rfmModel(t, analytics.CreateRfmInput{Name: "scoped", WindowDays: 365,
		BusinessUnitIDs: []int{w.bus[0].ID}, Channels: []enum.Channel{enum.ChannelPOS},
		Split: analytics.RfmSplit{Mode: enum.RfmSplitMedian}})

	results := map[int]map[int]rfmRow{}
	for _, m := range []*ent.RfmModel{mean, median, custom, scoped} {
		results[m.ID] = w.checkRfm(t, m.ID)
	}
	if len(results[scoped.ID]) >= len(results[mean.ID]) {
		t.Errorf("the scoped model has %d members, the unscoped %d: the scope filters nothing",
			len(results[scoped.ID]), len(results[mean.ID]))
	}

	// MemberRfm lists each member's row in every model, by model id.
	checked := 0
	for id := range results[mean.ID] {
		got, err := w.svc.MemberRfm(ctx, id)
		if err != nil {
			t.Fatalf("member rfm: %v", err)
		}
		var want []analytics.MemberRfm
		for _, m := range []*ent.RfmModel{mean, median, custom, scoped} { // created in id order
			if r, ok := results[m.ID][id]; ok {
				want = append(want, analytics.MemberRfm{ModelID: m.ID, Segment: r.segment,
					RecencyDays: r.recency, Frequency: r.frequency, Monetary: r.monetary})
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("member %d: got %+v, want %+v", id, got, want)
		}
		if checked++; checked == 30 {
			break
		}
	}
	if got, err := w.svc.MemberRfm(ctx, 1); err != nil || len(got) != 0 {
		t.Errorf("unknown member: got %v, %v", got, err)
	}

	// A day later, with new orders (one for a member who had none, one
	// refund of a whole order), every result follows.
	w.clock.Advance(24 * time.Hour)
	var fresh int
	for id, m := range w.read(t).members {
		if _, ok := results[mean.ID][id]; !ok && counted(m.Status) {
			fresh = id
			break
		}
	}
	if fresh == 0 {
		t.Fatal("no counted member without orders in the seed")
	}
	now := w.clock.Now()
	res, err := w.sql.ExecContext(ctx, `UPDATE orders SET status = 'REFUNDED', refunded_amount = amount
WHERE status = 'PAID' AND paid_at > $1`, now.AddDate(0, 0, -20))
	if err != nil {
		t.Fatalf("refunding orders: %v", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatal("no order to refund")
	}
	w.saveOrders(t, []*ent.OrderCreate{
		w.orderCreate(fresh, 0, enum.ChannelPOS, 99_000_00, 0, entorder.StatusPAID, now.Add(-time.Hour)),
		w.orderCreate(fresh, 1, enum.ChannelMiniProgram, 5000, 1000, entorder.StatusPARTIALLY_REFUNDED, now.Add(-50*time.Hour)),
	})
	before := results[mean.ID]
	after := w.checkRfm(t, mean.ID)
	if r, ok := after[fresh]; !ok || r.recency != 0 || r.frequency != 2 || r.monetary != 99_000_00+4000 {
		t.Errorf("new buyer: got %+v (%v)", r, ok)
	}
	changed := 0
	for id, r := range after {
		if before[id] != r {
			changed++
		}
	}
	if changed == 0 {
		t.Error("nothing changed after a day and new orders")
	}
	w.checkRfm(t, scoped.ID)
}

func TestComputeRfmEmptyAndUnknown(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	m := w.rfmModel(t, analytics.CreateRfmInput{Name: "nobody", WindowDays: 30, Split: analytics.RfmSplit{Mode: enum.RfmSplitMean}})
	n, err := w.svc.ComputeRfm(ctx, m.ID)
	if err != nil || n != 0 {
		t.Fatalf("empty compute: %d, %v", n, err)
	}
	stats, err := w.svc.RfmSegments(ctx, m.ID)
	if err != nil {
		t.Fatalf("segments: %v", err)
	}
	for i, st := range stats {
		if st != (analytics.SegmentStat{Segment: enum.RfmSegment(enum.RfmSegment("").Values()[i])}) {
			t.Errorf("empty model segment %d: %+v", i, st)
		}
	}
	if len(stats) != 8 {
		t.Errorf("%d segments, want 8", len(stats))
	}
	_, err = w.svc.ComputeRfm(ctx, m.ID+1000)
	wantCode(t, err, fault.NotFound)
	_, err = w.svc.RfmSegments(ctx, m.ID+1000)
	wantCode(t, err, fault.NotFound)
}

// Two computations of one model at once must not interleave their DELETE
// and INSERT (a duplicate key) nor leave twice the rows.
func TestComputeRfmConcurrent(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.seed(t)
	m := w.rfmModel(t, analytics.CreateRfmInput{Name: "race", WindowDays: 365, Split: analytics.RfmSplit{Mode: enum.RfmSplitMedian}})
	want := w.checkRfm(t, m.ID)

	const n = 6
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, n)
	counts := make([]int64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			counts[i], errs[i] = w.svc.ComputeRfm(context.Background(), m.ID)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || counts[i] != int64(len(want)) {
			t.Errorf("computation %d: %d, %v; want %d", i, counts[i], errs[i], len(want))
		}
	}
	if got := w.storedRfm(t, m.ID); len(got) != len(want) {
		t.Errorf("%d rows stored, want %d", len(got), len(want))
	}
}
