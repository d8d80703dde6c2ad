package campaign

import (
	"context"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/coupon"
)

// plan is a campaign as a run acts on it: the row (re-read under its lock
// by every batch) and what follows from its definition.
type plan struct {
	c   *ent.Campaign
	cur cursor
	// tpl is the template of the ISSUE_COUPON action, nil without one.
	tpl *ent.CouponTemplate
	// audience is the campaign's audience, nil for every member; members
	// are its ids, ascending, once loadAudience has read them.
	audience *int
	members  []int
	loaded   bool
	// salt seeds the holdout hash.
	salt uint64
	// prio orders campaigns: higher priority first, then older.
	prio priority
}

// priority ranks a campaign against others matching a member at once.
type priority struct {
	level int
	id    int // 0: not created yet (dryRunCampaign)
}

// beats reports whether p takes a member from o: a strictly higher
// priority. Campaigns of equal priority do not exclude each other (the
// frequency cap keeps them apart).
func (p priority) beats(o priority) bool { return p.level > o.level }

// before orders campaigns for a member: higher priority, then older.
func (p priority) before(o priority) bool {
	if p.level != o.level {
		return p.level > o.level
	}
	return p.id < o.id
}

// loadPlan reads what c's runs need: its cursor and coupon template (the
// audience is read when needed, loadAudience).
func (s *Service) loadPlan(ctx context.Context, c *ent.Campaign) (*plan, error) {
	cur, err := readCursor(c)
	if err != nil {
		return nil, err
	}
	p := &plan{c: c, cur: cur, salt: holdoutSalt(c.Name, c.StartsAt), prio: priority{level: c.Priority, id: c.ID}}
	for _, a := range c.Actions {
		if a.Kind == enum.ActionIssueCoupon && a.CouponTemplateID != nil {
			if p.tpl, err = s.db.CouponTemplate.Get(ctx, *a.CouponTemplateID); err != nil {
				if ent.IsNotFound(err) {
					err = coupon.ErrTemplateNotFound
				}
				return nil, fmt.Errorf("campaign %d coupon template %d: %w", c.ID, *a.CouponTemplateID, err)
			}
		}
	}
	p.audience = audienceID(c, cur)
	return p, nil
}

// loadAudience reads the members of the plan's audience, once (a saved
// audience can be large: passes read it only when something happened).
func (s *Service) loadAudience(ctx context.Context, p *plan) error {
	if p.audience == nil || p.loaded {
		return nil
	}
	ids, err := s.audiences.MemberIDs(ctx, *p.audience)
	if err != nil {
		return fmt.Errorf("campaign %d audience %d: %w", p.c.ID, *p.audience, err)
	}
	p.members = ids // ascending (AudienceMembers)
	p.loaded = true
	return nil
}

// inAudience reports whether the member is in the campaign's audience
// (loadAudience has read it).
func (p *plan) inAudience(member int) bool {
	if p.audience == nil {
		return true
	}
	_, ok := slices.BinarySearch(p.members, member)
	return ok
}

// holdoutSalt identifies a campaign for its holdout hash: its name and
// start (to the second), both fixed at creation and both known to
// dryRunCampaign before the campaign exists, which lets a dry run count
// the holdout exactly.
func holdoutSalt(name string, startsAt time.Time) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(strconv.FormatInt(startsAt.Unix(), 10)))
	return h.Sum64()
}

// heldOut reports whether the member is in the campaign's holdout group:
// a stable hash of (salt, member) mod 100 below holdoutPercent.
func (p *plan) heldOut(member int) bool { return heldOutWith(p.salt, member, p.c.HoldoutPercent) }

func heldOutWith(salt uint64, member, percent int) bool {
	if percent <= 0 {
		return false
	}
	// splitmix64's finalizer: every bit of the input moves the result.
	z := salt ^ uint64(member)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return int(z%100) < percent
}

// consentFor is the consent a message channel needs, "" for none.
func consentFor(ch enum.MessageChannel) enum.ConsentKind {
	switch ch {
	case enum.MessageSMS:
		return "MARKETING_SMS"
	case enum.MessageWechatSubscribe:
		return "MARKETING_WECHAT"
	case enum.MessageEmail:
		return "MARKETING_EMAIL"
	}
	return ""
}

// needsConsent reports whether any action of the campaign needs consent.
func (p *plan) needsConsent() bool {
	for _, a := range p.c.Actions {
		if a.Kind == enum.ActionSendMessage && a.Channel != nil && consentFor(*a.Channel) != "" {
			return true
		}
	}
	return false
}

// allowed lists the actions the member's consents allow, in order.
func (p *plan) allowed(granted map[enum.ConsentKind]bool) []*spec.Action {
	out := make([]*spec.Action, 0, len(p.c.Actions))
	for _, a := range p.c.Actions {
		if a.Kind == enum.ActionSendMessage && a.Channel != nil {
			if k := consentFor(*a.Channel); k != "" && !granted[k] {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// cost is what the actions cost (fen); see the package comment.
func (s *Service) cost(p *plan, actions []*spec.Action) int64 {
	var n int64
	for _, a := range actions {
		switch a.Kind {
		case enum.ActionIssueCoupon:
			if p.tpl != nil && (p.tpl.Kind == coupon.KindFixedAmount || p.tpl.Kind == coupon.KindThreshold) {
				n += p.tpl.FaceValue
			}
		case enum.ActionAwardPoints:
			if a.Points != nil {
				n += int64(*a.Points) * PointValueFen
			}
		case enum.ActionSendMessage:
			switch {
			case a.Channel == nil:
			case *a.Channel == enum.MessageSMS:
				n += s.opts.SMSCost
			case *a.Channel == enum.MessageEmail:
				n += s.opts.EmailCost
			}
		}
	}
	return n
}

// placeholder is a template variable: {{name}}, spaces allowed inside.
var placeholder = regexp.MustCompile(`\{\{\s*([A-Za-z]+)\s*\}\}`)

// render fills a message template: {{displayName}}, {{tierName}} and
// {{couponTitle}} from vars, anything else becomes empty.
func render(tmpl string, vars map[string]string) string {
	return placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		return vars[placeholder.FindStringSubmatch(m)[1]]
	})
}
