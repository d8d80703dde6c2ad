package seed

import (
	"context"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/campaignexecution"
	entjob "github.com/onemember/onemember/ent/job"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/staff"
	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/order"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/calendar"
)

// campaignHistoryDays is how far back the demo campaigns started.
const campaignHistoryDays = 75

// holidays are marketing dates (营销节点) of the demo's holiday campaign:
// the lunar ones by year, the others every year.
var holidays = map[string][]string{
	"春节":  {"2025-01-29", "2026-02-17", "2027-02-06", "2028-01-26"},
	"端午节": {"2025-05-31", "2026-06-19", "2027-06-09", "2028-05-28"},
	"七夕":  {"2025-08-29", "2026-08-19", "2027-08-08", "2028-08-26"},
	"中秋节": {"2025-10-06", "2026-09-25", "2027-09-15", "2028-10-03"},
}

var yearlyHolidays = map[string]string{"元旦": "01-01", "妇女节": "03-08", "劳动节": "05-01", "618": "06-18",
	"国庆节": "10-01", "双十一": "11-11", "双十二": "12-12"}

// demoConversion is the share (percent) of a campaign's treated and
// holdout members who buy within its attribution window in the demo, and
// of the treated buyers who use the campaign's coupon.
type demoConversion struct{ treated, holdout, redeem int }

// campaigns loads three campaigns with history, so that 营销复盘 shows
// numbers: a birthday campaign (coupon and in-app greeting), a 30-day
// win-back (coupon and SMS, with a budget and a frequency cap) and a
// holiday greeting (SMS and WeChat), run by the campaign engine itself on
// a clock set back campaignHistoryDays days and moved a day at a time;
// then part of the members they touched, and fewer of their holdout
// groups, buy within the attribution window, many with the campaign's
// coupon. Members get marketing consents first (most to SMS, fewer to
// WeChat and e-mail). The birthday and win-back campaigns stay ACTIVE
// (the server's runner carries on from today); the holiday one is ENDED.
func campaigns(ctx context.Context, a *app.App, rng *mrand.Rand, o Options) error {
	if err := consents(ctx, a, rng, o.Now); err != nil {
		return err
	}
	protector, err := pii.NewProtector(a.Config.Keys.PIIEnc, a.Config.Keys.PIIIndex)
	if err != nil {
		return err
	}
	today := calendar.In(o.Now, a.Zone)
	start := today.AddDays(-campaignHistoryDays)
	clock := &seedClock{t: start.Start(a.Zone).Add(9*time.Hour + 30*time.Minute)}
	quiet := slog.New(slog.DiscardHandler)
	coupons := coupon.New(a.DB, a.Zone, clock.Now)
	queue := jobqueue.New(a.DB, quiet, jobqueue.Options{Now: clock.Now, Poll: 10 * time.Millisecond})
	svc := campaign.New(campaign.Deps{DB: a.DB, SQL: a.SQL, Audiences: a.Audiences, Coupons: coupons,
		Ledger:    ledger.New(a.DB, ledger.DefaultPolicy(a.Zone), password.DefaultParams(), clock.Now),
		Messenger: campaign.LogMessenger{Log: quiet}, Jobs: queue, PII: protector, Zone: a.Zone,
		Now: clock.Now, Log: a.Log})
	queue.Register(enum.JobRunCampaign, svc.RunHandler())

	birthdayTpl, err := coupons.CreateTemplate(ctx, coupon.TemplateInput{Title: "生日礼券 ¥20", Kind: coupon.KindFixedAmount,
		FaceValue: ptr[int64](2000), DaysAfterIssue: ptr(14), TotalStock: 1_000_000, PerMemberLimit: 5})
	if err != nil {
		return fmt.Errorf("birthday coupon: %w", err)
	}
	winBackTpl, err := coupons.CreateTemplate(ctx, coupon.TemplateInput{Title: "回归礼 满100减30", Kind: coupon.KindThreshold,
		FaceValue: ptr[int64](3000), MinSpend: ptr[int64](10000), DaysAfterIssue: ptr(14), TotalStock: 1_000_000, PerMemberLimit: 5})
	if err != nil {
		return fmt.Errorf("win-back coupon: %w", err)
	}
	since := start.Start(a.Zone)
	inApp, sms, wechat := enum.MessageInApp, enum.MessageSMS, enum.MessageWechatSubscribe
	msg := func(ch *enum.MessageChannel, title, body string) *spec.Action {
		return &spec.Action{Kind: enum.ActionSendMessage, Channel: ch, Title: &title, Body: &body}
	}
	defs := []campaign.CreateInput{{
		Name: "生日礼（提前7天）", Trigger: &spec.Trigger{Kind: enum.TriggerBirthday, DaysBefore: ptr(7)},
		Actions: []*spec.Action{{Kind: enum.ActionIssueCoupon, CouponTemplateID: &birthdayTpl.ID},
			msg(&inApp, "生日快乐", "{{displayName}}，祝您生日快乐！送您一张「{{couponTitle}}」，14天内有效。")},
		StartsAt: since, HoldoutPercent: ptr(10), AttributionDays: ptr(14), Priority: ptr(30),
	}, {
		Name: "30天未消费召回", Trigger: &spec.Trigger{Kind: enum.TriggerInactivity, InactiveDays: ptr(30)},
		Actions: []*spec.Action{{Kind: enum.ActionIssueCoupon, CouponTemplateID: &winBackTpl.ID},
			msg(&sms, "好久不见", "{{displayName}}，好久不见！送您「{{couponTitle}}」，14天内到店可用。")},
		StartsAt: since, HoldoutPercent: ptr(20), FrequencyCapDays: ptr(14), Budget: ptr[int64](1_500_000),
		AttributionDays: ptr(14), Priority: ptr(10),
	}}
	if name, day, ok := pickHoliday(start.AddDays(3), today.AddDays(-8)); ok {
		defs = append(defs, campaign.CreateInput{
			Name: name + "问候", Trigger: &spec.Trigger{Kind: enum.TriggerHoliday, Date: &day, DaysBefore: ptr(3)},
			Actions: []*spec.Action{msg(&sms, name+"快乐", "{{displayName}}，"+name+"快乐！会员专享好礼已上架，欢迎到店选购。"),
				msg(&wechat, name+"快乐", name+"会员专享好礼已上架")},
			StartsAt: since, EndsAt: ptr(day.AddDays(8).Start(a.Zone)), HoldoutPercent: ptr(10), Priority: ptr(20),
		})
	}
	var (
		ids         []int
		conversions []demoConversion
	)
	for i, in := range defs {
		c, err := svc.Create(ctx, nil, in)
		if err != nil {
			return fmt.Errorf("campaign %s: %w", in.Name, err)
		}
		if _, err := svc.Activate(ctx, c.ID, false); err != nil {
			return fmt.Errorf("activating campaign %s: %w", in.Name, err)
		}
		ids = append(ids, c.ID)
		conversions = append(conversions, []demoConversion{{40, 20, 70}, {30, 12, 60}, {25, 15, 0}}[i])
	}

	// Run the history a day at a time, with the job workers on the clock.
	qctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { queue.Run(qctx); close(done) }()
	err = func() error {
		for d := start; d.Before(today); d = d.AddDays(1) {
			clock.Set(d.Start(a.Zone).Add(9*time.Hour + 5*time.Minute))
			if _, err := svc.Plan(ctx); err != nil {
				return err
			}
			if err := waitForJobs(ctx, a.DB); err != nil {
				return err
			}
		}
		return nil
	}()
	stop()
	<-done
	if err != nil {
		return fmt.Errorf("running the campaigns' history: %w", err)
	}
	if len(ids) > 2 {
		if _, err := svc.End(ctx, ids[2]); err != nil {
			return err
		}
	}
	return conversionOrders(ctx, a, rng, o, coupons, clock, ids, conversions)
}

// consents records the demo members' marketing consents.
func consents(ctx context.Context, a *app.App, rng *mrand.Rand, now time.Time) error {
	ids, err := a.DB.Member.Query().Where(member.StatusEQ(member.StatusACTIVE)).Order(ent.Asc(member.FieldID)).IDs(ctx)
	if err != nil {
		return err
	}
	shares := []struct {
		kind    string
		percent int
	}{{"PRIVACY_POLICY", 100}, {"MARKETING_SMS", 65}, {"MARKETING_WECHAT", 45}, {"MARKETING_EMAIL", 20}}
	var members []int64
	var kinds []string
	for _, id := range ids {
		for _, s := range shares {
			if rng.IntN(100) < s.percent {
				members, kinds = append(members, int64(id)), append(kinds, s.kind)
			}
		}
	}
	_, err = a.SQL.ExecContext(ctx, `INSERT INTO consents (member_id, kind, granted, updated_at)
		SELECT m, k, true, $3 FROM unnest($1::bigint[], $2::text[]) AS x(m, k) ON CONFLICT (member_id, kind) DO NOTHING`,
		pq.Array(members), pq.Array(kinds), now)
	if err != nil {
		return fmt.Errorf("consents: %w", err)
	}
	return nil
}

// pickHoliday is the latest marketing date in [from, to].
func pickHoliday(from, to calendar.Date) (string, calendar.Date, bool) {
	var (
		name string
		best calendar.Date
	)
	consider := func(n, s string) {
		d, err := calendar.Parse(s)
		if err == nil && !d.Before(from) && !to.Before(d) && (best.Before(d) || (d == best && n < name)) {
			name, best = n, d
		}
	}
	for n, days := range holidays {
		for _, s := range days {
			consider(n, s)
		}
	}
	for n, md := range yearlyHolidays {
		for y := from.Year; y <= to.Year; y++ {
			consider(n, fmt.Sprintf("%d-%s", y, md))
		}
	}
	return name, best, !best.IsZero()
}

// waitForJobs waits until no RUN_CAMPAIGN job is queued or running.
func waitForJobs(ctx context.Context, db *ent.Client) error {
	for {
		n, err := db.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign),
			entjob.StatusIn(enum.JobQueued, enum.JobRunning)).Count(ctx)
		if err != nil || n == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// conversionOrders ingests the orders of the members the campaigns
// touched (treated) or held out, within each campaign's attribution
// window; treated buyers often redeem the campaign's coupon.
func conversionOrders(ctx context.Context, a *app.App, rng *mrand.Rand, o Options, coupons *coupon.Service,
	clock *seedClock, ids []int, conv []demoConversion) error {
	adminID, err := a.DB.Staff.Query().Where(staff.Email(AdminEmail)).OnlyID(ctx)
	if err != nil {
		return err
	}
	adm, err := a.DB.Staff.Get(ctx, adminID)
	if err != nil {
		return err
	}
	ctx = auth.WithViewer(ctx, auth.Viewer{Kind: token.KindStaff, Staff: adm})
	stores, err := a.DB.Store.Query().WithBusinessUnit().All(ctx)
	if err != nil {
		return err
	}
	for i, id := range ids {
		c := conv[i]
		camp, err := a.DB.Campaign.Get(ctx, id)
		if err != nil {
			return err
		}
		execs, err := a.DB.CampaignExecution.Query().Where(campaignexecution.CampaignID(id),
			campaignexecution.StatusIn(enum.ExecutionReached, enum.ExecutionHoldout)).
			Order(ent.Asc(campaignexecution.FieldID)).All(ctx)
		if err != nil {
			return err
		}
		window := min(camp.AttributionDays, 10)
		for _, x := range execs {
			share := c.holdout
			if x.Status == enum.ExecutionReached {
				share = c.treated
			}
			if rng.IntN(100) >= share {
				continue
			}
			paidAt := x.ExecutedAt.Add(time.Duration(1+rng.IntN(window-1))*24*time.Hour + time.Duration(rng.IntN(8))*time.Hour)
			if !paidAt.Before(o.Now) {
				continue
			}
			st := stores[rng.IntN(len(stores))]
			catalogue := products[string(st.Edges.BusinessUnit.Kind)]
			var (
				items []order.Item
				total int64
			)
			for total < 10000 || len(items) == 0 {
				pr := catalogue[rng.IntN(len(catalogue))]
				q := 1 + rng.IntN(3)
				items = append(items, order.Item{SKU: pr.sku, Name: pr.name, Category: pr.category, Quantity: q,
					UnitPrice: pr.price, Amount: pr.price * int64(q)})
				total += pr.price * int64(q)
			}
			in := order.IngestInput{ExternalID: fmt.Sprintf("SEED-CAMP-%d", x.ID), Channel: enum.ChannelPOS,
				StoreCode: st.Code, Member: identity.MemberRef{MemberID: &x.MemberID}, PaidAt: paidAt,
				Amount: total, Items: items}
			if x.CouponID != nil && rng.IntN(100) < c.redeem {
				cp, err := a.DB.Coupon.Get(ctx, *x.CouponID)
				if err != nil {
					return err
				}
				if paidAt.Before(cp.ExpiresAt) {
					clock.Set(paidAt)
					in.CouponOrderRef = in.ExternalID
					res, err := coupons.Lock(ctx, coupon.LockInput{OrderRef: in.CouponOrderRef, Codes: []string{cp.Code},
						BasketAmount: total, StoreCode: st.Code})
					if err != nil {
						return fmt.Errorf("locking coupon %s: %w", cp.Code, err)
					}
					in.Amount = total - res.Discount
				}
			}
			in.Payments = []order.Payment{{Method: enum.PayWeChat, Amount: in.Amount}}
			if _, err := a.Orders.Ingest(ctx, in); err != nil {
				return fmt.Errorf("seeding order %s: %w", in.ExternalID, err)
			}
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// seedClock is the settable clock the campaigns' history runs on.
type seedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *seedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *seedClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
