package coupon_test

import (
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestTemplateInputValidate(t *testing.T) {
	now := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	past, future, farFuture := now.Add(-48*time.Hour), now.Add(24*time.Hour), now.Add(30*24*time.Hour)
	tests := []struct {
		name   string
		in     coupon.TemplateInput
		fields []string // nil: valid
	}{
		{"fixed amount", input(), nil},
		{"threshold", input(func(in *coupon.TemplateInput) {
			in.Kind, in.MinSpend = coupon.KindThreshold, testkit.Ptr[int64](10000)
		}), nil},
		{"percent off", input(func(in *coupon.TemplateInput) {
			in.Kind, in.FaceValue, in.DiscountPercent = coupon.KindPercentOff, nil, testkit.Ptr(80)
		}), nil},
		{"gift", input(func(in *coupon.TemplateInput) { in.Kind, in.FaceValue = coupon.KindGift, nil }), nil},
		{"window", input(func(in *coupon.TemplateInput) {
			in.DaysAfterIssue, in.ValidFrom, in.ValidTo = nil, &past, &future
		}), nil},
		{"percent 0", input(func(in *coupon.TemplateInput) {
			in.Kind, in.FaceValue, in.DiscountPercent = coupon.KindPercentOff, nil, testkit.Ptr(0)
		}), []string{"discountPercent"}},
		{"percent 100", input(func(in *coupon.TemplateInput) {
			in.Kind, in.FaceValue, in.DiscountPercent = coupon.KindPercentOff, nil, testkit.Ptr(100)
		}), []string{"discountPercent"}},
		{"percent missing", input(func(in *coupon.TemplateInput) {
			in.Kind, in.FaceValue = coupon.KindPercentOff, nil
		}), []string{"discountPercent"}},
		{"percent on fixed amount", input(func(in *coupon.TemplateInput) { in.DiscountPercent = testkit.Ptr(80) }), []string{"discountPercent"}},
		{"stock and limit zero", input(func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = 0, 0 }),
			[]string{"totalStock", "perMemberLimit"}},
		{"stock negative", input(func(in *coupon.TemplateInput) { in.TotalStock = -5 }), []string{"totalStock"}},
		{"window in the past", input(func(in *coupon.TemplateInput) {
			from := past.Add(-24 * time.Hour)
			in.DaysAfterIssue, in.ValidFrom, in.ValidTo = nil, &from, &past
		}), []string{"validity"}},
		{"window reversed", input(func(in *coupon.TemplateInput) {
			in.DaysAfterIssue, in.ValidFrom, in.ValidTo = nil, &farFuture, &future
		}), []string{"validity"}},
		{"window half", input(func(in *coupon.TemplateInput) { in.DaysAfterIssue, in.ValidTo = nil, &future }), []string{"validity"}},
		{"window and days", input(func(in *coupon.TemplateInput) { in.ValidFrom, in.ValidTo = &past, &future }), []string{"validity"}},
		{"no validity", input(func(in *coupon.TemplateInput) { in.DaysAfterIssue = nil }), []string{"validity"}},
		{"days zero", input(func(in *coupon.TemplateInput) { in.DaysAfterIssue = testkit.Ptr(0) }), []string{"daysAfterIssue"}},
		{"days too many", input(func(in *coupon.TemplateInput) { in.DaysAfterIssue = testkit.Ptr(3651) }), []string{"daysAfterIssue"}},
		{"fixed without face value", input(func(in *coupon.TemplateInput) { in.FaceValue = nil }), []string{"faceValue"}},
		{"fixed zero face value", input(func(in *coupon.TemplateInput) { in.FaceValue = testkit.Ptr[int64](0) }), []string{"faceValue"}},
		{"threshold below face", input(func(in *coupon.TemplateInput) {
			in.Kind, in.MinSpend = coupon.KindThreshold, testkit.Ptr[int64](1000)
		}), []string{"minSpend"}},
		{"threshold without min spend", input(func(in *coupon.TemplateInput) { in.Kind = coupon.KindThreshold }), []string{"minSpend"}},
		{"gift with face value", input(func(in *coupon.TemplateInput) { in.Kind = coupon.KindGift }), []string{"faceValue"}},
		{"negative min spend", input(func(in *coupon.TemplateInput) { in.MinSpend = testkit.Ptr[int64](-1) }), []string{"minSpend"}},
		{"unknown kind", input(func(in *coupon.TemplateInput) { in.Kind = "BOGO" }), []string{"kind"}},
		{"blank title", input(func(in *coupon.TemplateInput) { in.Title = "  " }), []string{"title"}},
		{"everything at once", coupon.TemplateInput{Kind: coupon.KindPercentOff, DiscountPercent: testkit.Ptr(120)},
			[]string{"title", "discountPercent", "validity", "totalStock", "perMemberLimit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate(now)
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if fault.CodeOf(err) != fault.BadUserInput {
				t.Fatalf("want BAD_USER_INPUT, got %v", err)
			}
			var got []string
			for _, f := range fault.Fields(err) {
				if !slices.Contains(got, f.Field) {
					got = append(got, f.Field)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tt.fields)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("fields = %v, want %v (%v)", got, want, err)
			}
		})
	}
}

func TestLockInputValidate(t *testing.T) {
	err := coupon.LockInput{Codes: []string{"ab", "AB", " "}, BasketAmount: 0}.Validate()
	var got []string
	for _, f := range fault.Fields(err) {
		got = append(got, f.Field)
	}
	want := []string{"orderRef", "codes", "codes", "basketAmount", "storeCode"}
	if !slices.Equal(got, want) {
		t.Fatalf("fields = %v, want %v (%v)", got, want, err)
	}
	if err := (coupon.LockInput{OrderRef: "R1", Codes: []string{"A"}, BasketAmount: 1, StoreCode: "S"}).Validate(); err != nil {
		t.Fatalf("valid input refused: %v", err)
	}
}

func TestDiscount(t *testing.T) {
	percent := func(p int) *ent.CouponTemplate {
		return &ent.CouponTemplate{Kind: coupon.KindPercentOff, DiscountPercent: &p}
	}
	tests := []struct {
		name   string
		t      *ent.CouponTemplate
		basket int64
		want   int64
	}{
		{"fixed", &ent.CouponTemplate{Kind: coupon.KindFixedAmount, FaceValue: 1000}, 5000, 1000},
		{"fixed capped at basket", &ent.CouponTemplate{Kind: coupon.KindFixedAmount, FaceValue: 1000}, 600, 600},
		{"threshold", &ent.CouponTemplate{Kind: coupon.KindThreshold, FaceValue: 2000, MinSpend: 10000}, 10000, 2000},
		{"gift", &ent.CouponTemplate{Kind: coupon.KindGift}, 10000, 0},
		{"80% to pay", percent(80), 10000, 2000},
		{"rounded down", percent(80), 999, 199},     // 199.8
		{"85% of 123.45", percent(85), 12345, 1851}, // 1851.75
		{"99% of 1 fen", percent(99), 1, 0},
		{"1% of 1 fen", percent(1), 1, 0}, // 0.99
		{"1% of 101 fen", percent(1), 101, 99},
		{"no overflow", percent(1), 9_000_000_000_000_000_000, 8_910_000_000_000_000_000},
		{"odd huge basket", percent(33), 9_223_372_036_854_775_807, 6_179_659_264_692_699_790},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := coupon.Discount(tt.t, tt.basket); got != tt.want {
				t.Fatalf("Discount = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNormalizeCode(t *testing.T) {
	if got := coupon.NormalizeCode(" 7k3m-oil0 abcd "); got != "7K3M0110ABCD" {
		t.Fatalf("NormalizeCode = %q", got)
	}
}
