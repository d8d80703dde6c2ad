package seed

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/account"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/staff"
	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/membership"
	"github.com/onemember/onemember/internal/order"
)

// products per BU kind: sku, name, category, unit price in fen.
var products = map[string][]struct {
	sku, name, category string
	price               int64
}{
	"MALL":        {{"M-1001", "羊绒围巾", "服饰", 59900}, {"M-1002", "运动鞋", "鞋靴", 69900}, {"M-1003", "护肤套装", "美妆", 45800}, {"M-1004", "电影票", "娱乐", 6900}},
	"SUPERMARKET": {{"S-2001", "有机牛奶", "乳品", 1590}, {"S-2002", "五常大米5kg", "粮油", 6990}, {"S-2003", "智利车厘子", "生鲜", 12800}, {"S-2004", "洗衣液", "日化", 3990}, {"S-2005", "精酿啤酒", "酒水", 1290}},
	"RESTAURANT":  {{"D-3001", "招牌红烧肉", "热菜", 6800}, {"D-3002", "双人套餐", "套餐", 19800}, {"D-3003", "杨枝甘露", "甜品", 2800}},
	"BOOKSTORE":   {{"B-4001", "三体(全集)", "图书", 16800}, {"B-4002", "手账本", "文创", 4500}, {"B-4003", "咖啡拿铁", "饮品", 3200}},
}

// seasonality weights months: Spring Festival, 618 and Double 11 peak.
var seasonality = [13]float64{0, 1.5, 1.3, 0.9, 0.9, 1.0, 1.4, 0.9, 0.9, 1.0, 1.1, 1.6, 1.5}

// HistoryOf seeds history (below) for the members with the given ids
// only, with its own random seed: scripts/bench.sh gives the members it
// reads (server mint-tokens --with-history) the cards seeded members have
// without seeding two years of orders for all of them. Running it again
// changes nothing: every order, top-up and paid card it writes is
// idempotent on its reference.
func HistoryOf(ctx context.Context, a *app.App, ids []int, seed int64, now time.Time) error {
	members, err := liveMembers(ctx, a.DB, member.IDIn(ids...))
	if err != nil {
		return err
	}
	return history(ctx, a, newRand(seed), Options{Seed: seed, Now: now}, members)
}

// history ingests two years of orders for members (through the order
// service, so points, growth, lots, tiers and events are exactly what
// production would have), some stored-value top-ups and paid cards.
func history(ctx context.Context, a *app.App, rng *mrand.Rand, o Options, members []*ent.Member) error {
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
	type plan struct {
		m      *ent.Member
		orders []order.IngestInput
		topUp  int64
		card   string
	}
	start := o.Now.AddDate(-2, 0, 0)
	plans := make([]plan, 0, len(members))
	channels := []enum.Channel{enum.ChannelPOS, enum.ChannelPOS, enum.ChannelPOS, enum.ChannelMiniProgram, enum.ChannelEcommerce, enum.ChannelApp}
	for _, m := range members {
		p := plan{m: m}
		if rng.IntN(100) < 75 {
			from := start
			if m.RegisteredAt.After(from) {
				from = m.RegisteredAt
			}
			n := int(math.Round(rng.ExpFloat64() * 9))
			var times []time.Time
			for len(times) < n {
				t := from.Add(time.Duration(rng.Int64N(int64(o.Now.Sub(from)))))
				if rng.Float64()*1.6 < seasonality[t.Month()] {
					times = append(times, t)
				}
			}
			sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
			for i, t := range times {
				st := stores[rng.IntN(len(stores))]
				catalogue := products[string(st.Edges.BusinessUnit.Kind)]
				var items []order.Item
				var total int64
				for k := 0; k <= rng.IntN(3); k++ {
					pr := catalogue[rng.IntN(len(catalogue))]
					q := 1 + rng.IntN(3)
					items = append(items, order.Item{SKU: pr.sku, Name: pr.name, Category: pr.category, Quantity: q, UnitPrice: pr.price, Amount: pr.price * int64(q)})
					total += pr.price * int64(q)
				}
				id := m.ID
				p.orders = append(p.orders, order.IngestInput{
					ExternalID: fmt.Sprintf("SEED-%d-%d", m.ID, i), Channel: channels[rng.IntN(len(channels))],
					StoreCode: st.Code, Member: identity.MemberRef{MemberID: &id}, PaidAt: t, Amount: total, Items: items,
					Payments: []order.Payment{{Method: enum.PayWeChat, Amount: total}},
				})
			}
		}
		if rng.IntN(100) < 20 {
			p.topUp = []int64{50000, 100000, 200000}[rng.IntN(3)]
		}
		if rng.IntN(100) < 5 {
			p.card = []string{"PLUS_MONTH", "PLUS_QUARTER", "PLUS_YEAR"}[rng.IntN(3)]
		}
		plans = append(plans, p)
	}
	work := make(chan plan)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				if err := seedMember(ctx, a, p.m, p.orders, p.topUp, p.card); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for _, p := range plans {
		select {
		case work <- p:
		case err := <-errc:
			close(work)
			wg.Wait()
			return err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	// Lots earned more than a year ago are past their expiry now.
	_, err = a.Ledger.ExpirePoints(ctx)
	return err
}

func seedMember(ctx context.Context, a *app.App, m *ent.Member, orders []order.IngestInput, topUp int64, card string) error {
	for i, in := range orders {
		// Every third order pays up to a quarter with points when the member
		// has some: they were earned wherever the member shopped before, so
		// the cross-BU settlement has something to settle.
		if i%3 == 2 {
			acct, err := a.DB.Account.Query().Where(account.MemberID(m.ID)).Only(ctx)
			if err != nil {
				return fmt.Errorf("reading the seeded member's points: %w", err)
			}
			if pts := min(acct.PointsBalance, in.Amount/4); pts >= 100 {
				in.Payments = []order.Payment{{Method: enum.PayWeChat, Amount: in.Amount - pts}, {Method: enum.PayPoints, Amount: pts, Points: pts}}
			}
		}
		_, err := a.Orders.Ingest(ctx, in)
		if errors.Is(err, ledger.ErrInsufficientPoints) {
			// The points had expired by now (the ledger expires lots as of
			// today): pay it all by WeChat.
			in.Payments = []order.Payment{{Method: enum.PayWeChat, Amount: in.Amount}}
			_, err = a.Orders.Ingest(ctx, in)
		}
		if err != nil {
			return fmt.Errorf("seeding order %s: %w", in.ExternalID, err)
		}
	}
	if topUp > 0 {
		if _, _, err := a.Ledger.TopUp(ctx, ledger.TopUpInput{MemberID: m.ID, Amount: topUp, Bonus: topUp / 10,
			PaymentRef: fmt.Sprintf("SEED-TOPUP-%d", m.ID)}); err != nil {
			return fmt.Errorf("seeding top-up: %w", err)
		}
	}
	if card != "" {
		plan, err := a.Programme.Plans(ctx)
		if err != nil {
			return err
		}
		for _, p := range plan {
			if p.Code == card {
				if _, _, err := a.Membership.Record(ctx, membership.PurchaseInput{MemberID: m.ID, PlanCode: card,
					PaymentRef: fmt.Sprintf("SEED-CARD-%d", m.ID), Amount: p.Price}); err != nil {
					return fmt.Errorf("seeding paid card: %w", err)
				}
			}
		}
	}
	return nil
}
