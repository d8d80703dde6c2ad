package seed

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/lib/pq"
	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/audience/rule"
	"github.com/onemember/onemember/internal/platform/database"
)

// seedTags are the manual tags of the demo, with the share of members
// holding each.
var seedTags = []struct {
	name, category string
	percent        int
}{
	{"咖啡爱好者", "兴趣偏好", 25},
	{"母婴人群", "人生阶段", 12},
	{"价格敏感", "消费特征", 30},
	{"夜间下单", "行为特征", 18},
}

// browsingKinds are what the demo members did in the apps.
var browsingKinds = []enum.BehaviorKind{enum.BehaviorView, enum.BehaviorView, enum.BehaviorView, enum.BehaviorClick,
	enum.BehaviorClick, enum.BehaviorWatch, enum.BehaviorFavorite, enum.BehaviorAddToCart, enum.BehaviorInteract,
	enum.BehaviorShare, enum.BehaviorReview}

// datacenter gives the data centre something real to show: behaviour
// events over the last 90 days, manual tags and one rule tag, an RFM
// model computed at once, an AIPL model and a saved audience.
func datacenter(ctx context.Context, a *app.App, rng *mrand.Rand, o Options) error {
	if _, err := a.Behavior.MaintainPartitions(ctx); err != nil {
		return err
	}
	members, err := a.DB.Member.Query().Select(member.FieldID, member.FieldRegisteredAt).All(ctx)
	if err != nil {
		return err
	}
	var (
		memberIDs, tagIDs []int64
		ev                eventRows
	)
	tags := make([]*ent.Tag, len(seedTags))
	for i, t := range seedTags {
		if tags[i], err = a.DB.Tag.Create().SetName(t.name).SetCategory(t.category).Save(ctx); err != nil {
			return fmt.Errorf("tag %s: %w", t.name, err)
		}
	}
	for _, m := range members {
		for i, t := range seedTags {
			if rng.IntN(100) < t.percent {
				memberIDs, tagIDs = append(memberIDs, int64(m.ID)), append(tagIDs, int64(tags[i].ID))
			}
		}
		if o.Now.Sub(m.RegisteredAt) < 300*24*time.Hour {
			ev.add(m.ID, enum.BehaviorRegister, m.RegisteredAt, fmt.Sprintf("REGISTER:%d", m.ID))
		}
		// Two in three members were active in the apps lately.
		if rng.IntN(3) == 0 {
			continue
		}
		for range 1 + rng.IntN(12) {
			at := o.Now.Add(-time.Duration(rng.Int64N(int64(90 * 24 * time.Hour))))
			ev.add(m.ID, browsingKinds[rng.IntN(len(browsingKinds))], at, fmt.Sprintf("seed-%d", rng.Int64()))
		}
	}
	_, err = database.WithTx(ctx, a.DB, func(tx *ent.Tx) (struct{}, error) {
		if _, err := tx.ExecContext(ctx, `INSERT INTO member_tags (tag_id, member_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])`,
			pq.Array(tagIDs), pq.Array(memberIDs)); err != nil {
			return struct{}{}, fmt.Errorf("tagging members: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO behavior_events (member_id, kind, occurred_at, channel, source, event_id)
SELECT m, k, t, 'MINI_PROGRAM', 's', e FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[]) AS x(m, k, t, e)
ON CONFLICT DO NOTHING`, pq.Array(ev.members), pq.Array(ev.kinds), pq.Array(ev.at), pq.Array(ev.keys))
		if err != nil {
			return struct{}{}, fmt.Errorf("behaviour events: %w", err)
		}
		return struct{}{}, nil
	})
	if err != nil {
		return err
	}

	rfm, err := a.Analytics.CreateRfmModel(ctx, analytics.CreateRfmInput{Name: "全渠道 RFM（近一年）", WindowDays: 365,
		Split: analytics.RfmSplit{Mode: enum.RfmSplitMean}})
	if err != nil {
		return err
	}
	if _, err := a.Analytics.ComputeRfm(ctx, rfm.ID); err != nil {
		return err
	}
	if _, err := a.Analytics.CreateAiplModel(ctx, analytics.CreateAiplInput{Name: "默认 AIPL（近90天）", WindowDays: 90,
		Awareness: []enum.BehaviorKind{enum.BehaviorView, enum.BehaviorClick, enum.BehaviorWatch},
		Interest: []enum.BehaviorKind{enum.BehaviorRegister, enum.BehaviorFavorite, enum.BehaviorAddToCart, enum.BehaviorInteract,
			enum.BehaviorClaimCoupon},
		Purchase: []enum.BehaviorKind{enum.BehaviorPurchase}, LoyaltyMinPurchases: 2}); err != nil {
		return err
	}

	// The saved audience and the rule tag need this process's index.
	if err := a.Audiences.Index().Build(ctx); err != nil {
		return err
	}
	goldUp := &rule.Rule{Attribute: &rule.AttributeRule{Field: enum.AttrTier, Op: enum.OpGte, Values: []string{"GOLD"}}}
	if _, err := a.Audiences.Create(ctx, audience.CreateInput{Name: "高价值金卡以上会员", Priority: 10, Refresh: enum.RefreshDaily,
		Rule: &rule.Rule{And: []*rule.Rule{goldUp, {Rfm: &rule.RfmRule{ModelID: rfm.ID,
			Segments: []enum.RfmSegment{enum.RfmImportantValue, enum.RfmImportantKeep}}}}}}); err != nil {
		return err
	}
	_, err = a.Audiences.CreateTag(ctx, audience.CreateTagInput{Name: "金卡及以上", Category: "会员等级", Rule: goldUp}, nil)
	return err
}

type eventRows struct {
	members []int64
	kinds   []string
	at      []string
	keys    []string
}

func (e *eventRows) add(member int, kind enum.BehaviorKind, at time.Time, key string) {
	e.members = append(e.members, int64(member))
	e.kinds = append(e.kinds, string(kind))
	e.at = append(e.at, at.Format(time.RFC3339Nano))
	e.keys = append(e.keys, key)
}
