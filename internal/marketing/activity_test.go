package marketing_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/activityregistration"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/marketing"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// activity creates an activity starting tomorrow for two hours.
func (e *env) activity(t testing.TB, capacity int, minTier *string) *ent.Activity {
	t.Helper()
	start := e.clock.Now().Add(24 * time.Hour)
	a, err := e.svc.CreateActivity(context.Background(), marketing.ActivityInput{
		Title: "亲子烘焙", StartsAt: start, EndsAt: start.Add(2 * time.Hour), Capacity: capacity, MinTierCode: minTier,
	})
	if err != nil {
		t.Fatalf("CreateActivity: %v", err)
	}
	return a
}

// checkCounters compares the activity's counters with its rows.
func (e *env) checkCounters(t *testing.T, activityID int) (registered, waitlisted, checkedIn int) {
	t.Helper()
	a, err := e.db.Activity.Get(t.Context(), activityID)
	if err != nil {
		t.Fatal(err)
	}
	count := func(st ...enum.RegistrationStatus) int {
		return e.db.ActivityRegistration.Query().
			Where(activityregistration.ActivityID(activityID), activityregistration.StatusIn(st...)).CountX(t.Context())
	}
	registered = count(enum.RegistrationRegistered, enum.RegistrationCheckedIn)
	waitlisted = count(enum.RegistrationWaitlisted)
	checkedIn = count(enum.RegistrationCheckedIn)
	if a.RegisteredCount != registered || a.WaitlistedCount != waitlisted || a.CheckedInCount != checkedIn {
		t.Errorf("counters registered/waitlisted/checked-in %d/%d/%d, rows %d/%d/%d",
			a.RegisteredCount, a.WaitlistedCount, a.CheckedInCount, registered, waitlisted, checkedIn)
	}
	return registered, waitlisted, checkedIn
}

func TestCreateActivityValidates(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	_, err := e.svc.CreateActivity(t.Context(), marketing.ActivityInput{
		Title: "", StartsAt: now, EndsAt: now.Add(-time.Hour), Capacity: 0,
		MinTierCode: testkit.Ptr("PLATINUM"), BusinessUnitCode: testkit.Ptr("NOPE"),
	})
	wantCode(t, err, fault.BadUserInput, "title", "endsAt", "capacity", "minTierCode", "businessUnitCode")
	if n := e.db.Activity.Query().CountX(t.Context()); n != 0 {
		t.Errorf("%d activities, want 0", n)
	}
}

func TestRegisterEligibilityAndIdempotence(t *testing.T) {
	e := newEnv(t)
	a := e.activity(t, 10, testkit.Ptr("GOLD"))
	silver, gold, diamond, none := e.member(t, "SILVER"), e.member(t, "GOLD"), e.member(t, "DIAMOND"), e.member(t)

	for _, m := range []int{silver, none} {
		_, err := e.svc.Register(t.Context(), m, a.ID)
		wantCode(t, err, fault.Forbidden)
	}
	r1, err := e.svc.Register(t.Context(), gold, a.ID)
	if err != nil {
		t.Fatalf("Register gold: %v", err)
	}
	if _, err := e.svc.Register(t.Context(), diamond, a.ID); err != nil {
		t.Fatalf("Register diamond: %v", err)
	}
	again, err := e.svc.Register(t.Context(), gold, a.ID)
	if err != nil || again.ID != r1.ID {
		t.Errorf("registering again = %v, %v; want registration %d", again, err, r1.ID)
	}
	if reg, _, _ := e.checkCounters(t, a.ID); reg != 2 {
		t.Errorf("%d registered, want 2", reg)
	}
	_, err = e.svc.Register(t.Context(), gold, 999999)
	wantCode(t, err, fault.NotFound)

	// Cancelled, a member may register again.
	if _, err := e.svc.Cancel(t.Context(), gold, r1.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	r2, err := e.svc.Register(t.Context(), gold, a.ID)
	if err != nil || r2.ID == r1.ID || r2.Status != enum.RegistrationRegistered {
		t.Errorf("re-registering = %+v, %v; want a new REGISTERED", r2, err)
	}

	upcoming, err := e.svc.UpcomingActivities(t.Context(), 0)
	if err != nil || len(upcoming) != 1 {
		t.Errorf("UpcomingActivities = %d, %v; want 1", len(upcoming), err)
	}
	e.clock.Advance(27 * time.Hour) // past the end
	defer e.clock.Advance(-27 * time.Hour)
	_, err = e.svc.Register(t.Context(), diamond, a.ID)
	wantCode(t, err, fault.BadUserInput, "activityId")
	if upcoming, _ := e.svc.UpcomingActivities(t.Context(), 0); len(upcoming) != 0 {
		t.Errorf("%d upcoming after the end, want 0", len(upcoming))
	}
}

// 200 members register at once for 50 seats; then 5 seat holders cancel
// and the 5 earliest on the waitlist move up.
func TestRegisterRace(t *testing.T) {
	e := newEnv(t)
	a := e.activity(t, 50, nil)
	ms := e.members(t, 200, 0)
	regs := make([]*ent.ActivityRegistration, len(ms))
	errs := parallel(len(ms), func(i int) error {
		var err error
		regs[i], err = e.svc.Register(context.Background(), ms[i], a.ID)
		return err
	})
	unexpected(t, errs)
	registered, waitlisted, _ := e.checkCounters(t, a.ID)
	if registered != 50 || waitlisted != 150 {
		t.Fatalf("%d registered, %d waitlisted; want 50 and 150", registered, waitlisted)
	}

	var seated []*ent.ActivityRegistration
	for _, r := range regs {
		if r.Status == enum.RegistrationRegistered {
			seated = append(seated, r)
		}
	}
	waiting := e.db.ActivityRegistration.Query().
		Where(activityregistration.ActivityID(a.ID), activityregistration.StatusEQ(enum.RegistrationWaitlisted)).
		Order(activityregistration.ByID()).Limit(5).IDsX(t.Context())

	errs = parallel(5, func(i int) error {
		_, err := e.svc.Cancel(context.Background(), seated[i].MemberID, seated[i].ID)
		return err
	})
	unexpected(t, errs)
	registered, waitlisted, _ = e.checkCounters(t, a.ID)
	if registered != 50 || waitlisted != 145 {
		t.Errorf("%d registered, %d waitlisted; want 50 and 145", registered, waitlisted)
	}
	promoted := e.db.ActivityRegistration.Query().
		Where(activityregistration.IDIn(waiting...)).AllX(t.Context())
	for _, r := range promoted {
		if r.Status != enum.RegistrationRegistered {
			t.Errorf("registration %d is %s, want REGISTERED (earliest waitlisted)", r.ID, r.Status)
		}
	}
	cancelled := e.db.ActivityRegistration.Query().
		Where(activityregistration.ActivityID(a.ID), activityregistration.StatusEQ(enum.RegistrationCancelled)).CountX(t.Context())
	if cancelled != 5 {
		t.Errorf("%d cancelled, want 5", cancelled)
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	a := e.activity(t, 1, nil)
	m1, m2, m3 := e.member(t), e.member(t), e.member(t)
	r1, _ := e.svc.Register(t.Context(), m1, a.ID)
	r2, _ := e.svc.Register(t.Context(), m2, a.ID)
	r3, _ := e.svc.Register(t.Context(), m3, a.ID)
	if r2.Status != enum.RegistrationWaitlisted || r3.Status != enum.RegistrationWaitlisted {
		t.Fatalf("statuses %s %s, want WAITLISTED", r2.Status, r3.Status)
	}

	_, err := e.svc.Cancel(t.Context(), m2, r1.ID)
	wantCode(t, err, fault.NotFound)

	// A waitlisted member leaving promotes nobody.
	if c, err := e.svc.Cancel(t.Context(), m3, r3.ID); err != nil || c.Status != enum.RegistrationCancelled || c.CancelledAt == nil {
		t.Fatalf("Cancel waitlisted = %+v, %v", c, err)
	}
	if reg, wait, _ := e.checkCounters(t, a.ID); reg != 1 || wait != 1 {
		t.Errorf("%d/%d, want 1 registered 1 waitlisted", reg, wait)
	}
	if _, err := e.svc.Cancel(t.Context(), m1, r1.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if got := e.db.ActivityRegistration.GetX(t.Context(), r2.ID); got.Status != enum.RegistrationRegistered {
		t.Errorf("waitlisted registration is %s, want REGISTERED", got.Status)
	}
	again, err := e.svc.Cancel(t.Context(), m1, r1.ID)
	if err != nil || again.Status != enum.RegistrationCancelled {
		t.Errorf("cancelling twice = %v, %v; want the cancelled registration", again, err)
	}
	if reg, wait, _ := e.checkCounters(t, a.ID); reg != 1 || wait != 0 {
		t.Errorf("%d/%d, want 1 registered 0 waitlisted", reg, wait)
	}
	// The last seat holder leaves: nobody to promote.
	if _, err := e.svc.Cancel(t.Context(), m2, r2.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if reg, wait, _ := e.checkCounters(t, a.ID); reg != 0 || wait != 0 {
		t.Errorf("%d/%d, want 0/0", reg, wait)
	}
}

func TestTicketCheckIn(t *testing.T) {
	e := newEnv(t)
	a := e.activity(t, 2, nil)
	m1, m2, m3 := e.member(t), e.member(t), e.member(t)
	r1, _ := e.svc.Register(t.Context(), m1, a.ID)
	r2, _ := e.svc.Register(t.Context(), m2, a.ID)
	r3, _ := e.svc.Register(t.Context(), m3, a.ID)
	const staff = 7

	if code, err := e.svc.TicketCode(t.Context(), r3); err != nil || code != nil {
		t.Errorf("waitlisted ticket = %v, %v; want none", code, err)
	}
	code1, err := e.svc.TicketCode(t.Context(), r1)
	if err != nil || code1 == nil {
		t.Fatalf("TicketCode = %v, %v", code1, err)
	}
	if again, _ := e.svc.TicketCode(t.Context(), r1); *again != *code1 {
		t.Errorf("ticket changed: %s then %s", *code1, *again)
	}
	code2, _ := e.svc.TicketCode(t.Context(), r2)

	checked, err := e.svc.CheckInTicket(t.Context(), staff, strings.ToLower(*code1))
	if err != nil {
		t.Fatalf("CheckInTicket: %v", err)
	}
	if checked.Status != enum.RegistrationCheckedIn || checked.CheckedInBy == nil || *checked.CheckedInBy != staff || checked.CheckedInAt == nil {
		t.Errorf("checked in %+v", checked)
	}
	_, err = e.svc.CheckInTicket(t.Context(), staff, *code1)
	wantCode(t, err, fault.Conflict)
	if !strings.Contains(err.Error(), "already checked in at 2025-03-10 12:00") {
		t.Errorf("message %q does not say when", err)
	}
	// One CHECK_IN behaviour event, a door scan (POS), about the activity;
	// the refused second scan recorded nothing.
	if n := e.behaviorRows(t, `source = 's' AND kind = 'CHECK_IN' AND event_id = $1 AND member_id = $2
		AND target_id = $3 AND channel = 'POS' AND occurred_at = $4`,
		fmt.Sprintf("CHECK_IN:%d", r1.ID), m1, fmt.Sprint(a.ID), *checked.CheckedInAt); n != 1 {
		t.Errorf("%d CHECK_IN behaviour events of the check-in, want 1", n)
	}
	if n := e.behaviorRows(t, "kind = 'CHECK_IN'"); n != 1 {
		t.Errorf("%d CHECK_IN behaviour events, want 1", n)
	}
	_, err = e.svc.Cancel(t.Context(), m1, r1.ID)
	wantCode(t, err, fault.Conflict)

	// A ticket taken before cancelling grants nothing afterwards.
	if _, err := e.svc.Cancel(t.Context(), m2, r2.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CheckInTicket(t.Context(), staff, *code2)
	wantCode(t, err, fault.Conflict)

	forged := []byte(*code1)
	forged[len(forged)-1] ^= 1
	for _, bad := range []string{"", "HELLO", string(forged)} {
		_, err = e.svc.CheckInTicket(t.Context(), staff, bad)
		wantCode(t, err, fault.BadUserInput, "ticketCode")
	}
	// m3 was promoted when m2 left; their ticket expires a day after the end.
	r3 = e.db.ActivityRegistration.GetX(t.Context(), r3.ID)
	code3, _ := e.svc.TicketCode(t.Context(), r3)
	if code3 == nil {
		t.Fatal("promoted registration has no ticket")
	}
	e.clock.Set(a.EndsAt.Add(24*time.Hour + time.Second))
	_, err = e.svc.CheckInTicket(t.Context(), staff, *code3)
	wantCode(t, err, fault.BadUserInput, "ticketCode")

	reg, wait, in := e.checkCounters(t, a.ID)
	if reg != 2 || wait != 0 || in != 1 {
		t.Errorf("counters %d/%d/%d, want 2/0/1", reg, wait, in)
	}
	statuses := []enum.RegistrationStatus{}
	for _, r := range e.db.ActivityRegistration.Query().Order(activityregistration.ByID()).AllX(t.Context()) {
		statuses = append(statuses, r.Status)
	}
	want := []enum.RegistrationStatus{enum.RegistrationCheckedIn, enum.RegistrationCancelled, enum.RegistrationRegistered}
	if !slices.Equal(statuses, want) {
		t.Errorf("statuses %v, want %v", statuses, want)
	}
}
