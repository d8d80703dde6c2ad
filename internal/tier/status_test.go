package tier_test

import (
	"errors"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/platform/fault"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	// GOLD since 1 Sep 2025: the review is 1 Sep 2026, counting growth
	// after 1 Sep 2025. It is 15 June 2026.
	gold := e.member(memberSpec{tier: "GOLD", tierSince: e.at(2025, 9, 1, 0, 0)})
	e.growth(gold.ID, 1000, e.at(2024, 3, 1, 12, 0))
	e.growth(gold.ID, 800, e.at(2025, 8, 20, 12, 0)) // in the last 12 months, but gone by the review
	e.growth(gold.ID, 600, e.at(2025, 10, 10, 12, 0))
	e.growth(gold.ID, 300, e.at(2026, 5, 1, 12, 0))
	e.growth(gold.ID, -100, e.at(2026, 5, 3, 12, 0)) // a refund's reversal

	// NORMAL since registering on 10 Mar 2023: never reviewed; the next
	// anniversary is shown.
	normal := e.member(memberSpec{tier: "NORMAL", registered: e.at(2023, 3, 10, 10, 0)})
	e.growth(normal.ID, 120, e.at(2026, 4, 5, 9, 0))
	e.growth(normal.ID, 70, e.at(2026, 3, 10, 10, 0)) // exactly 12 months before the review: outside

	// SILVER whose review fell due on 1 June and has not run yet: the
	// window is the 12 months before now.
	overdue := e.member(memberSpec{tier: "SILVER", tierSince: e.at(2025, 6, 1, 0, 0)})
	e.growth(overdue.ID, 450, e.at(2025, 6, 20, 0, 0))

	diamond := e.member(memberSpec{tier: "DIAMOND", tierSince: e.at(2026, 1, 1, 0, 0)})
	e.growth(diamond.ID, 3500, e.at(2026, 1, 2, 0, 0))

	tests := []struct {
		name                       string
		memberID                   int
		reviewAt                   time.Time
		inWindow, toRetain, toNext int64
		current, projected, next   string
	}{
		// To next counts the last 12 months (promotion rule): 800+600+300-100.
		{"gold losing old growth", gold.ID, e.at(2026, 9, 1, 0, 0), 800, 700, 1400, "GOLD", "SILVER", "DIAMOND"},
		{"lowest tier", normal.ID, e.at(2027, 3, 10, 10, 0), 120, 0, 310, "NORMAL", "NORMAL", "SILVER"},
		{"review overdue", overdue.ID, e.at(2026, 6, 1, 0, 0), 450, 50, 1050, "SILVER", "NORMAL", "GOLD"},
		{"top tier keeping", diamond.ID, e.at(2027, 1, 1, 0, 0), 3500, 0, 0, "DIAMOND", "DIAMOND", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := e.svc.Status(ctx, e.db, tt.memberID)
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if !st.ReviewAt.Equal(tt.reviewAt) {
				t.Errorf("ReviewAt = %v, want %v", st.ReviewAt, tt.reviewAt)
			}
			if st.GrowthInWindow != tt.inWindow || st.GrowthToRetain != tt.toRetain || st.ToNext != tt.toNext {
				t.Errorf("in window %d, to retain %d, to next %d; want %d, %d, %d",
					st.GrowthInWindow, st.GrowthToRetain, st.ToNext, tt.inWindow, tt.toRetain, tt.toNext)
			}
			if codeOf(st.Current) != tt.current || codeOf(st.Projected) != tt.projected || codeOf(st.Next) != tt.next {
				t.Errorf("current %s, projected %s, next %s; want %s, %s, %s",
					codeOf(st.Current), codeOf(st.Projected), codeOf(st.Next), tt.current, tt.projected, tt.next)
			}
		})
	}

	_, err := e.svc.Status(ctx, e.db, 1)
	if !errors.Is(err, account.ErrMemberNotFound) || fault.CodeOf(err) != fault.NotFound {
		t.Errorf("Status of an unknown member: %v, want NOT_FOUND", err)
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	start := e.clock.Now()
	m := e.member(memberSpec{tier: "NORMAL"})
	e.growth(m.ID, 600, start)
	if _, _, err := e.reevaluate(ctx, m.ID, "签到"); err != nil {
		t.Fatal(err)
	}
	// A year without growth: the review takes SILVER away.
	e.clock.Set(start.AddDate(1, 1, 0))
	if _, err := e.svc.Review(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := e.svc.History(ctx, e.db, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 {
		t.Fatalf("%d changes, want 2", len(h))
	}
	type row struct{ dir, from, to string }
	got := []row{}
	for _, c := range h {
		got = append(got, row{string(c.Direction), codeOf(c.Edges.From), codeOf(c.Edges.To)})
	}
	want := []row{{"DOWN", "SILVER", "NORMAL"}, {"UP", "NORMAL", "SILVER"}}
	if got[0] != want[0] || got[1] != want[1] {
		t.Errorf("history %v, want newest first %v", got, want)
	}
	if h, err := e.svc.History(ctx, e.db, 1); err != nil || len(h) != 0 {
		t.Errorf("History of an unknown member = %v, %v; want empty", h, err)
	}
}
