package analytics_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
)

func TestCreateRfmModelValidation(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	valid := func(mod func(*analytics.CreateRfmInput)) analytics.CreateRfmInput {
		in := analytics.CreateRfmInput{Name: "RFM", WindowDays: 365, Split: analytics.RfmSplit{Mode: enum.RfmSplitMean}}
		mod(&in)
		return in
	}
	for _, c := range []struct {
		name  string
		field string
		mod   func(*analytics.CreateRfmInput)
	}{
		{"blank name", "name", func(in *analytics.CreateRfmInput) { in.Name = "  " }},
		{"long name", "name", func(in *analytics.CreateRfmInput) { in.Name = strings.Repeat("名", 101) }},
		{"no window", "windowDays", func(in *analytics.CreateRfmInput) { in.WindowDays = 0 }},
		{"long window", "windowDays", func(in *analytics.CreateRfmInput) { in.WindowDays = 3651 }},
		{"bad mode", "split.mode", func(in *analytics.CreateRfmInput) { in.Split.Mode = "MODE" }},
		{"bad channel", "channels", func(in *analytics.CreateRfmInput) { in.Channels = []enum.Channel{"TV"} }},
		{"unknown business unit", "businessUnitIds", func(in *analytics.CreateRfmInput) {
			in.BusinessUnitIDs = []int{w.bus[0].ID, w.bus[1].ID + 1000}
		}},
		{"custom without recency", "split.recencyDays", func(in *analytics.CreateRfmInput) {
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitCustom, Frequency: ptr(1.0), Monetary: ptr[int64](1)}
		}},
		{"custom without frequency", "split.frequency", func(in *analytics.CreateRfmInput) {
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitCustom, RecencyDays: ptr(1), Monetary: ptr[int64](1)}
		}},
		{"custom without monetary", "split.monetary", func(in *analytics.CreateRfmInput) {
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitCustom, RecencyDays: ptr(1), Frequency: ptr(1.0)}
		}},
		{"custom negative recency", "split.recencyDays", func(in *analytics.CreateRfmInput) {
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitCustom, RecencyDays: ptr(-1), Frequency: ptr(1.0), Monetary: ptr[int64](1)}
		}},
		{"custom negative frequency", "split.frequency", func(in *analytics.CreateRfmInput) {
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitCustom, RecencyDays: ptr(1), Frequency: ptr(-0.5), Monetary: ptr[int64](1)}
		}},
		{"custom NaN frequency", "split.frequency", func(in *analytics.CreateRfmInput) {
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitCustom, RecencyDays: ptr(1), Frequency: ptr(math.NaN()), Monetary: ptr[int64](1)}
		}},
		{"custom negative monetary", "split.monetary", func(in *analytics.CreateRfmInput) {
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitCustom, RecencyDays: ptr(1), Frequency: ptr(1.0), Monetary: ptr[int64](-1)}
		}},
		{"mean with values", "split.recencyDays", func(in *analytics.CreateRfmInput) { in.Split.RecencyDays = ptr(3) }},
		{"median with values", "split.monetary", func(in *analytics.CreateRfmInput) {
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitMedian, Monetary: ptr[int64](3)}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := w.svc.CreateRfmModel(ctx, valid(c.mod))
			wantField(t, err, c.field)
		})
	}

	// Several problems are reported at once.
	_, err := w.svc.CreateRfmModel(ctx, analytics.CreateRfmInput{Split: analytics.RfmSplit{Mode: enum.RfmSplitCustom}})
	for _, f := range []string{"name", "windowDays", "split.recencyDays", "split.frequency", "split.monetary"} {
		wantField(t, err, f)
	}

	// Valid models, names need not be unique; repeated ids and channels
	// are kept once.
	for range 2 {
		m, err := w.svc.CreateRfmModel(ctx, valid(func(in *analytics.CreateRfmInput) {
			in.Name = " 会员价值 "
			in.WindowDays = 3650
			in.BusinessUnitIDs = []int{w.bus[1].ID, w.bus[0].ID, w.bus[1].ID}
			in.Channels = []enum.Channel{enum.ChannelApp, enum.ChannelApp}
			in.Split = analytics.RfmSplit{Mode: enum.RfmSplitCustom, RecencyDays: ptr(0), Frequency: ptr(0.0), Monetary: ptr[int64](0)}
		}))
		if err != nil {
			t.Fatalf("valid model: %v", err)
		}
		if m.Name != "会员价值" || len(m.BusinessUnitIds) != 2 || len(m.Channels) != 1 ||
			m.CustomRecencyDays == nil || *m.CustomRecencyDays != 0 || m.ComputedAt != nil {
			t.Errorf("stored %+v", m)
		}
	}
}

func TestCreateAiplModelValidation(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		field string
		mod   func(*analytics.CreateAiplInput)
	}{
		{"blank name", "name", func(in *analytics.CreateAiplInput) { in.Name = "" }},
		{"long name", "name", func(in *analytics.CreateAiplInput) { in.Name = strings.Repeat("a", 101) }},
		{"no window", "windowDays", func(in *analytics.CreateAiplInput) { in.WindowDays = -1 }},
		{"long window", "windowDays", func(in *analytics.CreateAiplInput) { in.WindowDays = 3651 }},
		{"bad channel", "channels", func(in *analytics.CreateAiplInput) { in.Channels = []enum.Channel{"POS", "RADIO"} }},
		{"no awareness", "awareness", func(in *analytics.CreateAiplInput) { in.Awareness = nil }},
		{"no interest", "interest", func(in *analytics.CreateAiplInput) { in.Interest = []enum.BehaviorKind{} }},
		{"no purchase", "purchase", func(in *analytics.CreateAiplInput) { in.Purchase = nil }},
		{"bad kind", "interest", func(in *analytics.CreateAiplInput) { in.Interest = []enum.BehaviorKind{"LIKE"} }},
		{"one purchase is not loyalty", "loyalty.minPurchases", func(in *analytics.CreateAiplInput) { in.LoyaltyMinPurchases = 1 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := defaultAipl("AIPL")
			c.mod(&in)
			_, err := w.svc.CreateAiplModel(ctx, in)
			wantField(t, err, c.field)
		})
	}
	in := defaultAipl("AIPL")
	in.WindowDays, in.Channels = 3650, []enum.Channel{enum.ChannelApp}
	in.Purchase = []enum.BehaviorKind{enum.BehaviorPurchase, enum.BehaviorPurchase, enum.BehaviorRepurchase}
	m, err := w.svc.CreateAiplModel(ctx, in)
	if err != nil {
		t.Fatalf("valid model: %v", err)
	}
	if len(m.Purchase) != 2 || len(m.Channels) != 1 || m.LoyaltyMinPurchases != 2 {
		t.Errorf("stored %+v", m)
	}
}
