package dashboard

import (
	"context"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
)

// ChurnDays is DOMAIN.md's lifecycle line: a member whose last purchase
// was more than ChurnDays days ago is CHURNED.
const ChurnDays = 180

// ChannelStat is one registration channel's members over a date range.
type ChannelStat struct {
	Channel enum.Channel
	// NewMembers registered on one of the days.
	NewMembers int
	// ActiveMembers had an order that counts paid on one of the days.
	ActiveMembers int
	// ConvertedMembers had their first order that counts, ever, paid on
	// one of the days.
	ConvertedMembers int
	// ChurnedMembers crossed the churn line on one of the days and had not
	// bought again by the last: their last order that counts paid on or
	// before `to` was paid on a day of [from − 181, to − 181]. That makes
	// them CHURNED at `to` (last purchase more than 180 days before it),
	// having crossed on the 181st day after that purchase, which falls in
	// [from, to].
	ChurnedMembers int
}

// ChannelStats returns, for every Channel value in enum order (zeros
// included), the members who registered through it that are live now
// (the membership index: ACTIVE members, by members.source_channel), and
// among them the new, active, converted and churned members of the days
// from to to (inclusive, business zone; the day and "counts" definitions
// of the package comment).
//
// Registrations come from the index; purchases from the aggregates, not
// raw orders: the days' buyer bitmaps (sales_daily, through the day cache
// SalesOverview uses) ORed over [from, to] (active), over [from − 181,
// to − 181] minus those over [to − 180, to] (churned), and the
// first_order_days bitmaps over [from, to] (converted), each intersected
// with the channels' members. The figures are as fresh as the aggregates
// (see Run) and the index (about a second).
func (s *Service) ChannelStats(ctx context.Context, from, to calendar.Date) ([]ChannelStat, error) {
	if err := validateRange(from, to); err != nil {
		return nil, err
	}
	if s.members == nil {
		return nil, ErrNoMembers
	}
	lapsedFrom, lapsedTo := from.AddDays(-(ChurnDays + 1)), to.AddDays(-(ChurnDays + 1))
	recentFrom := to.AddDays(-ChurnDays)
	days, err := s.days.get(ctx, s.sql, lapsedFrom, to)
	if err != nil {
		return nil, err
	}
	var active, lapsed, recent []*roaring.Bitmap
	for d := lapsedFrom; !to.Before(d); d = d.AddDays(1) {
		b := days[d.String()].buyers
		if !d.Before(from) {
			active = append(active, b)
		}
		if !lapsedTo.Before(d) {
			lapsed = append(lapsed, b)
		}
		if !d.Before(recentFrom) {
			recent = append(recent, b)
		}
	}
	churned := roaring.AndNot(roaring.FastOr(lapsed...), roaring.FastOr(recent...))
	activeBM := roaring.FastOr(active...)
	convertedBM, err := s.firstBuyers(ctx, from, to)
	if err != nil {
		return nil, err
	}

	members, err := s.members.ByRegistrationChannel(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("reading the membership: %w", err)
	}
	var out []ChannelStat
	for _, c := range enum.Channel("").Values() {
		st := ChannelStat{Channel: enum.Channel(c)}
		m := members[st.Channel]
		if m.Registered != nil {
			st.NewMembers = int(m.Registered.GetCardinality())
		}
		if m.Live != nil {
			st.ActiveMembers = int(m.Live.AndCardinality(activeBM))
			st.ConvertedMembers = int(m.Live.AndCardinality(convertedBM))
			st.ChurnedMembers = int(m.Live.AndCardinality(churned))
		}
		out = append(out, st)
	}
	return out, nil
}

// firstBuyers ORs the first_order_days bitmaps of the days from to to.
func (s *Service) firstBuyers(ctx context.Context, from, to calendar.Date) (*roaring.Bitmap, error) {
	rows, err := s.sql.QueryContext(ctx, `SELECT members FROM first_order_days WHERE day BETWEEN $1::date AND $2::date`,
		from.String(), to.String())
	if err != nil {
		return nil, fmt.Errorf("reading first buyers: %w", err)
	}
	defer rows.Close()
	var parts []*roaring.Bitmap
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		bm := roaring.New()
		if err := bm.UnmarshalBinary(data); err != nil {
			return nil, fmt.Errorf("reading a first buyers bitmap: %w", err)
		}
		parts = append(parts, bm)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return roaring.FastOr(parts...), nil
}
