package audience

import (
	"context"
	"fmt"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// activeWindowDays is the span of MemberStats' "last 30 days".
const activeWindowDays = 30

// MemberStats is the membership dashboard (会员概况): the live members
// (status ACTIVE, as the index holds them) now.
type MemberStats struct {
	// Total is the live members.
	Total int64
	// NewLast30Days are the live members registered on one of the last 30
	// business days, today included: registered_at at or after the start
	// (00:00 in the business zone) of today − 29 days.
	NewLast30Days int64
	// ActiveLast30Days are the live members with an order that counts (not
	// refunded in full) paid at or after that same instant.
	ActiveLast30Days int64
	// The distributions are Insight's over all live members: genders and
	// age bands (UNKNOWN last) and registration channels in enum order,
	// tiers by rank (NONE last), regions (provinces) by size.
	ByGender, ByAgeBand, ByChannel, ByTier, ByRegion []Distribution
}

// MemberStats answers the membership dashboard from the in-memory index
// (kept current by replaying member_changes every Poll, 1 s by default, so
// a registration or an order shows within about a second plus the replay):
// one scan of the per-member registration and last-purchase days, and
// Insight over the live members for the distributions. It costs a few
// milliseconds at a million members and reads nothing from the database
// but the tier codes.
func (s *Service) MemberStats(ctx context.Context) (*MemberStats, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	snap := s.index.snap()
	in, err := s.Insight(ctx, snap.live)
	if err != nil {
		return nil, fmt.Errorf("member distributions: %w", err)
	}
	out := &MemberStats{
		ByGender: in.Gender, ByAgeBand: in.AgeBand, ByChannel: in.Channel, ByTier: in.Tier, ByRegion: in.Region,
	}
	// Every member falls in exactly one age band (UNKNOWN included), so
	// their sum is the total the shares were computed against, even when
	// a replay published a new snapshot in between.
	for _, d := range in.AgeBand {
		out.Total += d.Count
	}
	since := dayNumber(s.now(), s.zone) - (activeWindowDays - 1)
	snap.eachLive(func(o uint32, at *attrs) {
		if at.regDay[o] >= since {
			out.NewLast30Days++
		}
		if at.lastBuy[o] >= since {
			out.ActiveLast30Days++
		}
	})
	return out, nil
}

// ChannelMembers are the live members of one registration channel.
type ChannelMembers struct {
	// Live are all of them.
	Live *roaring.Bitmap
	// Registered are those registered on the days asked (business zone).
	Registered *roaring.Bitmap
}

// ByRegistrationChannel splits the live members (as member ordinals) by
// registration channel (members.source_channel), with those registered on
// the days from to to (inclusive, business zone), from one snapshot of the
// index. Every Channel value has an entry, empty ones included. The
// bitmaps are the caller's to change.
func (s *Service) ByRegistrationChannel(ctx context.Context, from, to calendar.Date) (map[enum.Channel]ChannelMembers, error) {
	if from.IsZero() || to.IsZero() || to.Before(from) {
		return nil, fault.Invalidf("to", "must not be before from")
	}
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	snap := s.index.snap()
	out := make(map[enum.Channel]ChannelMembers, len(enum.Channel("").Values()))
	for _, c := range enum.Channel("").Values() {
		live := roaring.New()
		if bm := snap.channel[enum.Channel(c)]; bm != nil {
			live = roaring.And(bm, snap.live)
		}
		out[enum.Channel(c)] = ChannelMembers{Live: live, Registered: roaring.New()}
	}
	lo, hi := dayNumber(from.Start(s.zone), s.zone), dayNumber(to.Start(s.zone), s.zone)
	registered := map[enum.Channel][]uint32{}
	snap.eachLive(func(o uint32, at *attrs) {
		if d := at.regDay[o]; d >= lo && d <= hi {
			registered[at.channel[o]] = append(registered[at.channel[o]], o)
		}
	})
	for c, os := range registered {
		if cm, ok := out[c]; ok {
			cm.Registered.AddMany(os)
		}
	}
	return out, nil
}
