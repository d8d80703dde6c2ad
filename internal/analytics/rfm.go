package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/rfmmodel"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// rfmWorkMem is the work_mem of a computation's transaction: the hash
// aggregate over the window's orders and the materialized per-member rows
// (about a million of them at most) then stay in memory instead of
// spilling to temporary files.
const rfmWorkMem = "256MB"

// RfmSplit is how R, F and M are each split into high and low. The values
// are for CUSTOM only: RecencyDays (R is high at or below it), Frequency
// and Monetary (fen; F and M are high at or above them).
type RfmSplit struct {
	Mode        enum.RfmSplitMode
	RecencyDays *int
	Frequency   *float64
	Monetary    *int64
}

// CreateRfmInput defines an RFM model. Empty BusinessUnitIDs or Channels
// means all of them.
type CreateRfmInput struct {
	Name            string
	WindowDays      int
	BusinessUnitIDs []int
	Channels        []enum.Channel
	Split           RfmSplit
}

// Validate reports every problem of in that needs no database, naming the
// fields of the GraphQL input.
func (in CreateRfmInput) Validate() error {
	errs := []error{validateName(in.Name), validateWindow(in.WindowDays), validateChannels(in.Channels)}
	bad := func(field, format string, args ...any) {
		errs = append(errs, fault.Invalidf(field, format, args...))
	}
	sp := in.Split
	switch sp.Mode {
	case enum.RfmSplitCustom:
		switch {
		case sp.RecencyDays == nil:
			bad("split.recencyDays", "is required for CUSTOM")
		case *sp.RecencyDays < 0:
			bad("split.recencyDays", "must not be negative")
		}
		switch {
		case sp.Frequency == nil:
			bad("split.frequency", "is required for CUSTOM")
		case math.IsNaN(*sp.Frequency) || math.IsInf(*sp.Frequency, 0):
			bad("split.frequency", "must be a finite number")
		case *sp.Frequency < 0:
			bad("split.frequency", "must not be negative")
		}
		switch {
		case sp.Monetary == nil:
			bad("split.monetary", "is required for CUSTOM")
		case *sp.Monetary < 0:
			bad("split.monetary", "must not be negative")
		}
	case enum.RfmSplitMean, enum.RfmSplitMedian:
		if sp.RecencyDays != nil {
			bad("split.recencyDays", "is only for CUSTOM")
		}
		if sp.Frequency != nil {
			bad("split.frequency", "is only for CUSTOM")
		}
		if sp.Monetary != nil {
			bad("split.monetary", "is only for CUSTOM")
		}
	default:
		bad("split.mode", "must be one of %s", strings.Join(enum.RfmSplitMode("").Values(), ", "))
	}
	for _, id := range in.BusinessUnitIDs {
		if id <= 0 {
			bad("businessUnitIds", "must not contain %d", id)
			break
		}
	}
	return errors.Join(errs...)
}

func validateChannels(chs []enum.Channel) error {
	for _, c := range chs {
		if !enum.Valid(c) {
			return fault.Invalidf("channels", "%q is not one of %s", c, strings.Join(enum.Channel("").Values(), ", "))
		}
	}
	return nil
}

// CreateRfmModel validates in, checks that its business units exist and
// creates the model (not computed yet).
func (s *Service) CreateRfmModel(ctx context.Context, in CreateRfmInput) (*ent.RfmModel, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	buIDs := unique(in.BusinessUnitIDs)
	slices.Sort(buIDs)
	if len(buIDs) > 0 {
		found, err := s.db.BusinessUnit.Query().Where(businessunit.IDIn(buIDs...)).IDs(ctx)
		if err != nil {
			return nil, fmt.Errorf("loading business units: %w", err)
		}
		if missing := missingIDs(buIDs, found); len(missing) > 0 {
			return nil, fault.Invalidf("businessUnitIds", "unknown business units: %s", strings.Join(missing, ", "))
		}
	}
	now := s.now()
	create := s.db.RfmModel.Create().
		SetName(strings.TrimSpace(in.Name)).SetWindowDays(in.WindowDays).
		SetSplitMode(in.Split.Mode).SetCreatedAt(now).SetUpdatedAt(now)
	if len(buIDs) > 0 {
		create.SetBusinessUnitIds(buIDs)
	}
	if chs := unique(in.Channels); len(chs) > 0 {
		create.SetChannels(chs)
	}
	if in.Split.Mode == enum.RfmSplitCustom {
		create.SetCustomRecencyDays(float64(*in.Split.RecencyDays)).
			SetCustomFrequency(*in.Split.Frequency).
			SetCustomMonetary(*in.Split.Monetary)
	}
	m, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating RFM model: %w", err)
	}
	return m, nil
}

func missingIDs(want, found []int) []string {
	var out []string
	for _, id := range want {
		if !slices.Contains(found, id) {
			out = append(out, strconv.Itoa(id))
		}
	}
	return out
}

// segmentOf is the segment of the three high/low answers (DOMAIN.md).
func segmentOf(rHigh, fHigh, mHigh bool) enum.RfmSegment {
	switch {
	case fHigh && mHigh && rHigh:
		return enum.RfmImportantValue
	case fHigh && mHigh:
		return enum.RfmImportantKeep
	case mHigh && rHigh:
		return enum.RfmImportantDevelop
	case mHigh:
		return enum.RfmImportantRetain
	case fHigh && rHigh:
		return enum.RfmGeneralValue
	case fHigh:
		return enum.RfmGeneralKeep
	case rHigh:
		return enum.RfmGeneralDevelop
	default:
		return enum.RfmGeneralRetain
	}
}

// segmentsByLows lists segmentOf by the index the SQL computes:
// 1 + (R low) + 2·(F low) + 4·(M low), as a text[] (1-based).
func segmentsByLows() []string {
	out := make([]string, 8)
	for i := range out {
		out[i] = string(segmentOf(i&1 == 0, i&2 == 0, i&4 == 0))
	}
	return out
}

// computeRfmQuery is the whole computation in one statement. %[1]s is the
// extra order filter (business units, channels), %[2]s the SELECT of the
// splits. Parameters: $1 model, $2 window start (exclusive), $3 today (a
// date in the business zone), $4 the zone's name, $5 the segments by
// index, $6 computed_at, then the filter's and the splits' own.
//
// agg is one hash aggregate over the window's orders; scored is
// materialized once and read by th (the splits) and by the INSERT; the
// model row, already locked by this transaction, takes the splits in the
// same statement. Rows go in in member order so that both indexes of
// rfm_results are appended to rather than written all over.
const computeRfmQuery = `WITH agg AS (
  SELECT o.member_id, max(o.paid_at) AS last_paid, count(*) AS frequency,
         sum(o.amount - o.refunded_amount) AS monetary
  FROM orders o
  WHERE o.paid_at > $2 AND o.status <> 'REFUNDED'%[1]s
  GROUP BY o.member_id
), scored AS MATERIALIZED (
  SELECT a.member_id, greatest($3::date - (a.last_paid AT TIME ZONE $4)::date, 0) AS recency_days,
         a.frequency::integer AS frequency, a.monetary::bigint AS monetary
  FROM agg a JOIN members m ON m.id = a.member_id
  WHERE m.status IN ` + memberStatuses + `
), th AS (
  %[2]s
), upd AS (
  UPDATE rfm_models SET threshold_recency_days = th.r, threshold_frequency = th.f,
    threshold_monetary = th.m, computed_at = $6, updated_at = $6
  FROM th WHERE rfm_models.id = $1
)
INSERT INTO rfm_results (model_id, member_id, recency_days, frequency, monetary, segment)
SELECT $1, s.member_id, s.recency_days, s.frequency, s.monetary,
  ($5::text[])[1 + CASE WHEN s.recency_days <= th.r THEN 0 ELSE 1 END
                 + CASE WHEN s.frequency >= th.f THEN 0 ELSE 2 END
                 + CASE WHEN s.monetary >= th.m THEN 0 ELSE 4 END]
FROM scored s CROSS JOIN th
ORDER BY s.member_id`

// ComputeRfm recomputes the model's rfm_results in one transaction and
// stores the splits used and computed_at on the model; it returns the
// number of members with a result. Computations of one model wait for each
// other on the model's row lock.
func (s *Service) ComputeRfm(ctx context.Context, modelID int) (int64, error) {
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (int64, error) {
		m, err := tx.RfmModel.Query().Where(rfmmodel.ID(modelID)).ForUpdate().Only(ctx)
		if ent.IsNotFound(err) {
			return 0, ErrRfmModelNotFound
		}
		if err != nil {
			return 0, fmt.Errorf("locking RFM model: %w", err)
		}
		now := s.now()
		today := calendar.In(now, s.zone)
		args := []any{
			m.ID,
			now.In(s.zone).AddDate(0, 0, -m.WindowDays),
			today.String(),
			s.zone.String(),
			pq.Array(segmentsByLows()),
			now,
		}
		arg := func(v any) string {
			args = append(args, v)
			return "$" + strconv.Itoa(len(args))
		}
		var filter strings.Builder
		if len(m.BusinessUnitIds) > 0 {
			ids := make([]int64, len(m.BusinessUnitIds))
			for i, id := range m.BusinessUnitIds {
				ids[i] = int64(id)
			}
			filter.WriteString("\n    AND o.business_unit_id = ANY(" + arg(pq.Array(ids)) + "::bigint[])")
		}
		if len(m.Channels) > 0 {
			filter.WriteString("\n    AND o.channel = ANY(" + arg(pq.Array(strs(m.Channels))) + "::text[])")
		}
		var split string
		switch m.SplitMode {
		case enum.RfmSplitMean:
			split = `SELECT avg(recency_days)::float8 AS r, avg(frequency)::float8 AS f, avg(monetary)::float8 AS m FROM scored`
		case enum.RfmSplitMedian:
			split = `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY recency_days) AS r,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY frequency) AS f,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY monetary) AS m FROM scored`
		case enum.RfmSplitCustom:
			if m.CustomRecencyDays == nil || m.CustomFrequency == nil || m.CustomMonetary == nil {
				return 0, fmt.Errorf("RFM model %d is CUSTOM without its split values", m.ID)
			}
			split = "SELECT " + arg(*m.CustomRecencyDays) + "::float8 AS r, " + arg(*m.CustomFrequency) +
				"::float8 AS f, " + arg(*m.CustomMonetary) + "::float8 AS m"
		default:
			return 0, fmt.Errorf("RFM model %d has unknown split mode %q", m.ID, m.SplitMode)
		}

		if _, err := tx.ExecContext(ctx, "SET LOCAL work_mem = '"+rfmWorkMem+"'"); err != nil {
			return 0, fmt.Errorf("sizing work memory: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM rfm_results WHERE model_id = $1`, m.ID); err != nil {
			return 0, fmt.Errorf("deleting old RFM results: %w", err)
		}
		res, err := tx.ExecContext(ctx, fmt.Sprintf(computeRfmQuery, filter.String(), split), args...)
		if err != nil {
			return 0, fmt.Errorf("computing RFM results: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("counting RFM results: %w", err)
		}
		return n, nil
	})
}

// SegmentStat is one segment of a computed model.
type SegmentStat struct {
	Segment enum.RfmSegment
	Members int64
	// Share is Members over the model's members with a result (0 when it
	// has none).
	Share float64
	// Averages over the segment's members (0 for an empty segment);
	// AvgMonetary is rounded to the nearest fen, halves away from zero.
	AvgRecencyDays, AvgFrequency float64
	AvgMonetary                  int64
}

const segmentsQuery = `SELECT segment, count(*), avg(recency_days)::float8, avg(frequency)::float8,
  round(avg(monetary))::bigint
FROM rfm_results WHERE model_id = $1 GROUP BY segment`

// RfmSegments returns the eight segments of the model's last computation
// in enum order, empty ones included.
func (s *Service) RfmSegments(ctx context.Context, modelID int) ([]SegmentStat, error) {
	exists, err := s.db.RfmModel.Query().Where(rfmmodel.ID(modelID)).Exist(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading RFM model: %w", err)
	}
	if !exists {
		return nil, ErrRfmModelNotFound
	}
	rows, err := s.sql.QueryContext(ctx, segmentsQuery, modelID)
	if err != nil {
		return nil, fmt.Errorf("reading RFM segments: %w", err)
	}
	defer rows.Close()
	segments := enum.RfmSegment("").Values()
	out := make([]SegmentStat, len(segments))
	for i, seg := range segments {
		out[i].Segment = enum.RfmSegment(seg)
	}
	var total int64
	for rows.Next() {
		var st SegmentStat
		if err := rows.Scan(&st.Segment, &st.Members, &st.AvgRecencyDays, &st.AvgFrequency, &st.AvgMonetary); err != nil {
			return nil, fmt.Errorf("reading RFM segments: %w", err)
		}
		i := slices.Index(segments, string(st.Segment))
		if i < 0 {
			return nil, fmt.Errorf("RFM model %d has results in unknown segment %q", modelID, st.Segment)
		}
		out[i] = st
		total += st.Members
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading RFM segments: %w", err)
	}
	if total > 0 {
		for i := range out {
			out[i].Share = float64(out[i].Members) / float64(total)
		}
	}
	return out, nil
}

// MemberRfm is a member's result in one computed model.
type MemberRfm struct {
	ModelID                int
	Segment                enum.RfmSegment
	RecencyDays, Frequency int
	Monetary               int64
}

// MemberRfm returns the member's result in every computed model that
// gave them one, by model id (none for an unknown member).
func (s *Service) MemberRfm(ctx context.Context, memberID int) ([]MemberRfm, error) {
	rows, err := s.sql.QueryContext(ctx, `SELECT model_id, segment, recency_days, frequency, monetary
FROM rfm_results WHERE member_id = $1 ORDER BY model_id`, memberID)
	if err != nil {
		return nil, fmt.Errorf("reading member RFM: %w", err)
	}
	defer rows.Close()
	out := []MemberRfm{}
	for rows.Next() {
		var r MemberRfm
		if err := rows.Scan(&r.ModelID, &r.Segment, &r.RecencyDays, &r.Frequency, &r.Monetary); err != nil {
			return nil, fmt.Errorf("reading member RFM: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading member RFM: %w", err)
	}
	return out, nil
}
