// Package seed loads deterministic demo data: the group's business units
// and stores, the tier ladder and benefits of DOMAIN.md, an ADMIN account
// and members with realistic Chinese names, phones, birthdays, regions and
// channels. The same --seed gives the same people; large member counts go
// through COPY.
package seed

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/benefit"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/identity"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/predicate"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/auth"
	ident "github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/database"
)

// AdminEmail is the seeded ADMIN account.
const AdminEmail = "admin@onemember.local"

// Options choose what to load.
type Options struct {
	Seed          int64
	Members       int
	AdminPassword string // generated and printed when empty
	// Now anchors registration dates (defaults to the current time).
	Now time.Time
	// SkipHistory leaves out orders, top-ups and paid cards (large seeds
	// for benchmarks that only need members).
	SkipHistory bool
}

// Run loads the demo data unless the group is already there.
func Run(ctx context.Context, a *app.App, o Options) error {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	exists, err := a.DB.BusinessUnit.Query().Where(businessunit.Code(group[0].code)).Exist(ctx)
	if err != nil {
		return err
	}
	if exists {
		a.Log.Info("demo data already loaded; nothing to do")
		return nil
	}
	rng := newRand(o.Seed)
	buIDs, err := organisation(ctx, a.DB)
	if err != nil {
		return err
	}
	if err := programme(ctx, a.DB); err != nil {
		return err
	}
	if err := admin(ctx, a, o.AdminPassword); err != nil {
		return err
	}
	started := time.Now()
	if err := members(ctx, a, rng, buIDs, o); err != nil {
		return err
	}
	a.Log.Info("seeded members", "count", o.Members, "took", time.Since(started).Round(time.Millisecond))
	if o.Members > 0 && !o.SkipHistory {
		started = time.Now()
		live, err := liveMembers(ctx, a.DB)
		if err != nil {
			return err
		}
		if err := history(ctx, a, rng, o, live); err != nil {
			return err
		}
		a.Log.Info("seeded two years of orders", "took", time.Since(started).Round(time.Millisecond))
		started = time.Now()
		if err := datacenter(ctx, a, rng, o); err != nil {
			return fmt.Errorf("data centre: %w", err)
		}
		a.Log.Info("seeded behaviour, tags, RFM and AIPL models", "took", time.Since(started).Round(time.Millisecond))
		if err := campaigns(ctx, a, rng, o); err != nil {
			return fmt.Errorf("campaigns: %w", err)
		}
	}
	return nil
}

// newRand is the generator of a --seed: the same seed, the same data.
func newRand(seed int64) *mrand.Rand {
	return mrand.New(mrand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
}

// liveMembers are the ACTIVE members (of those where selects), by id.
func liveMembers(ctx context.Context, db *ent.Client, where ...predicate.Member) ([]*ent.Member, error) {
	return db.Member.Query().Where(append(where, member.StatusEQ(member.StatusACTIVE))...).
		Order(ent.Asc(member.FieldID)).All(ctx)
}

func organisation(ctx context.Context, db *ent.Client) ([]int, error) {
	return database.WithTx(ctx, db, func(tx *ent.Tx) ([]int, error) {
		var ids []int
		for _, b := range group {
			bu, err := tx.BusinessUnit.Create().SetCode(b.code).SetName(b.name).
				SetKind(businessunit.Kind(b.kind)).Save(ctx)
			if err != nil {
				return nil, fmt.Errorf("business unit %s: %w", b.code, err)
			}
			ids = append(ids, bu.ID)
			for _, s := range b.stores {
				if err := tx.Store.Create().SetCode(s.code).SetName(s.name).SetCity(s.city).
					SetRegionCode(s.region).SetBusinessUnitID(bu.ID).Exec(ctx); err != nil {
					return nil, fmt.Errorf("store %s: %w", s.code, err)
				}
			}
		}
		return ids, nil
	})
}

func programme(ctx context.Context, db *ent.Client) error {
	_, err := database.WithTx(ctx, db, func(tx *ent.Tx) (struct{}, error) {
		for _, b := range benefits {
			if err := tx.Benefit.Create().SetCode(b.code).SetName(b.name).
				SetDescription(b.description).SetKind(b.kind).Exec(ctx); err != nil {
				return struct{}{}, fmt.Errorf("benefit %s: %w", b.code, err)
			}
		}
		for _, t := range tiers {
			ids, err := tx.Benefit.Query().Where(benefit.CodeIn(t.benefits...)).IDs(ctx)
			if err != nil {
				return struct{}{}, err
			}
			if err := tx.Tier.Create().SetCode(t.code).SetName(t.name).SetRank(t.rank).
				SetThreshold(t.threshold).SetMonthlySpendRequired(t.monthlySpend).
				SetReferralsRequired(t.referrals).SetPointsMultiplierPermille(t.multiplierPermill).
				AddBenefitIDs(ids...).Exec(ctx); err != nil {
				return struct{}{}, fmt.Errorf("tier %s: %w", t.code, err)
			}
		}
		for _, p := range plans {
			ids, err := tx.Benefit.Query().Where(benefit.CodeIn(p.benefits...)).IDs(ctx)
			if err != nil {
				return struct{}{}, err
			}
			if err := tx.PaidMembershipPlan.Create().SetCode(p.code).SetName(p.name).SetPeriod(p.period).
				SetPrice(p.price).AddBenefitIDs(ids...).Exec(ctx); err != nil {
				return struct{}{}, fmt.Errorf("plan %s: %w", p.code, err)
			}
		}
		return struct{}{}, nil
	})
	return err
}

func admin(ctx context.Context, a *app.App, pw string) error {
	generated := pw == ""
	if generated {
		var b [12]byte
		_, _ = rand.Read(b[:])
		pw = base64.RawURLEncoding.EncodeToString(b[:])
	}
	in := auth.CreateStaffInput{
		Email: AdminEmail, DisplayName: "系统管理员", Password: pw, Roles: []enum.StaffRole{enum.RoleAdmin},
	}
	if _, err := a.Accounts.CreateStaff(ctx, in); err != nil {
		return fmt.Errorf("admin account: %w", err)
	}
	if generated {
		fmt.Printf("ADMIN account: %s  password: %s  (set SEED_ADMIN_PASSWORD to choose it)\n", AdminEmail, pw)
	}
	return nil
}

// members inserts o.Members members and their PHONE identities with COPY,
// in batches of one transaction each.
func members(ctx context.Context, a *app.App, rng *mrand.Rand, buIDs []int, o Options) error {
	protector, err := pii.NewProtector(a.Config.Keys.PIIEnc, a.Config.Keys.PIIIndex)
	if err != nil {
		return err
	}
	entryTier, err := a.DB.Tier.Query().Order(ent.Asc("rank")).FirstID(ctx)
	if err != nil {
		return fmt.Errorf("entry tier: %w", err)
	}
	phones := map[string]bool{}
	const batch = 10_000
	for done := 0; done < o.Members; done += batch {
		n := min(batch, o.Members-done)
		people := make([]person, n)
		for i := range people {
			people[i] = newPerson(rng, phones, buIDs, o.Now)
		}
		if err := copyMembers(ctx, a, protector, entryTier, people); err != nil {
			return err
		}
	}
	return nil
}

type person struct {
	name, phone  string
	gender       enum.Gender
	birthday     time.Time
	region       string
	channel      enum.Channel
	bu           int
	registeredAt time.Time
}

func newPerson(rng *mrand.Rand, phones map[string]bool, buIDs []int, now time.Time) person {
	p := person{gender: enum.GenderFemale}
	given := givenFemale
	if rng.IntN(100) < 48 {
		p.gender, given = enum.GenderMale, givenMale
	}
	p.name = surnames[rng.IntN(len(surnames))] + given[rng.IntN(len(given))]
	for {
		p.phone = mobilePrefixes[rng.IntN(len(mobilePrefixes))] + fmt.Sprintf("%08d", rng.IntN(100_000_000))
		if !phones[p.phone] {
			phones[p.phone] = true
			break
		}
	}
	p.birthday = time.Date(1960+rng.IntN(46), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC)
	p.region = regions[rng.IntN(len(regions))]
	w := rng.IntN(100)
	for _, c := range channels {
		if w < c.weight {
			p.channel = c.ch
			break
		}
		w -= c.weight
	}
	p.bu = buIDs[rng.IntN(len(buIDs))]
	p.registeredAt = now.Add(-time.Duration(rng.Int64N(int64(3 * 365 * 24 * time.Hour))))
	return p
}

func copyMembers(ctx context.Context, a *app.App, p *pii.Protector, tierID int, people []person) error {
	tx, err := a.SQL.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	rows, err := tx.QueryContext(ctx, "SELECT nextval(pg_get_serial_sequence('members','id')) FROM generate_series(1, $1)", len(people))
	if err != nil {
		return fmt.Errorf("drawing member ids: %w", err)
	}
	ids := make([]int, 0, len(people))
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn("members", "id", "created_at", "updated_at", "member_no", "status",
		"display_name", "avatar_url", "gender", "name_enc", "phone_enc", "phone_index", "birthday_enc",
		"birth_year", "birth_month", "region_code", "source_channel", "source_business_unit_id", "registered_at",
		"tier_id", "status_reason"))
	if err != nil {
		return fmt.Errorf("copy members: %w", err)
	}
	for i, m := range people {
		name, err := p.Encrypt(m.name, "member.name")
		if err != nil {
			return err
		}
		phone, err := p.Encrypt(m.phone, "member.phone")
		if err != nil {
			return err
		}
		bday, err := p.Encrypt(m.birthday.Format("2006-01-02"), "member.birthday")
		if err != nil {
			return err
		}
		if _, err := stmt.ExecContext(ctx, ids[i], m.registeredAt, m.registeredAt, ident.MemberNumber(ids[i]), "ACTIVE",
			m.name, "", string(m.gender), name, phone, p.BlindIndex(string(identity.KindPHONE), m.phone), bday,
			m.birthday.Year(), int(m.birthday.Month()), m.region, string(m.channel), m.bu, m.registeredAt,
			tierID, ""); err != nil {
			return fmt.Errorf("copy member: %w", err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return fmt.Errorf("copy members: %w", err)
	}
	if err := stmt.Close(); err != nil {
		return err
	}
	stmt, err = tx.PrepareContext(ctx, pq.CopyIn("identities", "kind", "app_id", "lookup", "value_enc", "masked_value", "member_id", "bound_at"))
	if err != nil {
		return fmt.Errorf("copy identities: %w", err)
	}
	for i, m := range people {
		enc, err := p.Encrypt(m.phone, "identity.value")
		if err != nil {
			return err
		}
		if _, err := stmt.ExecContext(ctx, "PHONE", "", ident.LookupKey(p, identity.KindPHONE, "", m.phone),
			enc, pii.MaskPhone(m.phone), ids[i], m.registeredAt); err != nil {
			return fmt.Errorf("copy identity: %w", err)
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return fmt.Errorf("copy identities: %w", err)
	}
	if err := stmt.Close(); err != nil {
		return err
	}
	return tx.Commit()
}
