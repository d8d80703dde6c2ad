package benchtool_test

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/benchtool"
	"github.com/onemember/onemember/internal/platform/config"
	"github.com/onemember/onemember/internal/seed"
)

func TestPick(t *testing.T) {
	items := make([]int, 1000)
	for i := range items {
		items[i] = i
	}
	a := benchtool.Pick(items, 100, 7)
	if len(a) != 100 {
		t.Fatalf("picked %d, want 100", len(a))
	}
	if !slices.Equal(a, benchtool.Pick(items, 100, 7)) {
		t.Error("the same seed picked different items")
	}
	if slices.Equal(a, benchtool.Pick(items, 100, 8)) {
		t.Error("another seed picked the same items")
	}
	sorted := slices.Sorted(slices.Values(a))
	if len(slices.Compact(sorted)) != 100 {
		t.Error("picked an item twice")
	}
	all := benchtool.Pick(items, len(items), 7)
	if !slices.Equal(slices.Sorted(slices.Values(all)), items) {
		t.Error("picking all items is not a permutation")
	}
	if items[0] != 0 || items[999] != 999 {
		t.Error("Pick changed its input")
	}
}

func TestParseArgs(t *testing.T) {
	o, err := benchtool.ParseArgs(nil, io.Discard)
	if err != nil || o != (benchtool.Options{What: benchtool.MemberTokens, Count: 200, Seed: 1}) {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	o, err = benchtool.ParseArgs([]string{"--member-numbers", "--count", "0", "--seed", "9"}, io.Discard)
	if err != nil || o != (benchtool.Options{What: benchtool.MemberNumbers, Count: 0, Seed: 9}) {
		t.Errorf("--member-numbers: %+v, %v", o, err)
	}
	o, err = benchtool.ParseArgs([]string{"--with-history", "--count", "5"}, io.Discard)
	if err != nil || o != (benchtool.Options{What: benchtool.MemberTokens, Count: 5, Seed: 1, WithHistory: true}) {
		t.Errorf("--with-history: %+v, %v", o, err)
	}
	for _, bad := range [][]string{{"--count", "-1"}, {"--api-client", "--member-numbers"}, {"--api-client", "--with-history"}, {"extra"}, {"--nope"}} {
		if _, err := benchtool.ParseArgs(bad, io.Discard); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRefusesProduction(t *testing.T) {
	err := benchtool.Allowed(&config.Config{Env: config.Production})
	if err == nil || !strings.Contains(err.Error(), "production") {
		t.Fatalf("Allowed(production) = %v, want a refusal", err)
	}
	if err := benchtool.Allowed(&config.Config{Env: config.Development}); err != nil {
		t.Fatalf("Allowed(development) = %v", err)
	}
}

// The tokens, member numbers and API client secret work against the real
// server: the tokens authenticate as the picked seeded members, and the
// client can ingest an order for a picked member number.
func TestMintedCredentialsWork(t *testing.T) {
	s := apptest.Start(t)
	ctx := context.Background()
	if err := seed.Run(ctx, s.App, seed.Options{Seed: 1, Members: 50, SkipHistory: true, AdminPassword: "admin password 1"}); err != nil {
		t.Fatal(err)
	}
	mint := func(o benchtool.Options) []string {
		t.Helper()
		var out bytes.Buffer
		if err := benchtool.Run(ctx, s.App, o, &out); err != nil {
			t.Fatalf("Run(%+v): %v", o, err)
		}
		return strings.Fields(out.String())
	}

	tokens := mint(benchtool.Options{What: benchtool.MemberTokens, Count: 10, Seed: 3})
	numbers := mint(benchtool.Options{What: benchtool.MemberNumbers, Count: 10, Seed: 3})
	if len(tokens) != 10 || len(numbers) != 10 {
		t.Fatalf("got %d tokens and %d numbers, want 10 each", len(tokens), len(numbers))
	}
	for i, tok := range tokens {
		var out struct {
			Viewer struct{ MemberNo string }
		}
		s.Do(tok, `query { viewer { ... on Member { memberNo } } }`, nil).Decode(t, &out)
		// The same seed picks the same members in the same order.
		if out.Viewer.MemberNo != numbers[i] {
			t.Errorf("token %d authenticates as %q, want member %s", i, out.Viewer.MemberNo, numbers[i])
		}
	}
	if all := mint(benchtool.Options{What: benchtool.MemberNumbers}); len(all) != 50 {
		t.Errorf("--count 0 printed %d members, want all 50", len(all))
	}
	if err := benchtool.Run(ctx, s.App, benchtool.Options{Count: 51}, io.Discard); err == nil {
		t.Error("asking for more members than live ones: no error")
	}

	secret := mint(benchtool.Options{What: benchtool.APIClient})
	if len(secret) != 1 {
		t.Fatalf("api client printed %q", secret)
	}
	var out struct {
		IngestOrder struct {
			Duplicate bool
			Order     struct{ Amount int }
		}
	}
	s.Do(secret[0], apptest.Op(t, "IngestOrder"), map[string]any{"input": map[string]any{
		"externalId": "bench-1", "channel": "POS", "storeCode": "SUPER-SH-01",
		"member": map[string]any{"memberNo": numbers[0]}, "paidAt": time.Now().Add(-time.Minute).Format(time.RFC3339),
		"amount": 1990, "payments": []map[string]any{{"method": "CASH", "amount": 1990}},
		"items": []map[string]any{{"sku": "SKU-1", "name": "milk", "quantity": 1, "unitPrice": 1990, "amount": 1990}},
	}}).Decode(t, &out)
	if out.IngestOrder.Duplicate || out.IngestOrder.Order.Amount != 1990 {
		t.Errorf("ingestOrder with the minted client: %+v", out)
	}
}

// --with-history seeds the order history of the picked members, and of
// them only, as server seed does; minting again adds nothing.
func TestWithHistorySeedsThePickedMembers(t *testing.T) {
	s := apptest.Start(t)
	ctx := context.Background()
	if err := seed.Run(ctx, s.App, seed.Options{Seed: 1, Members: 30, SkipHistory: true, AdminPassword: "admin password 1"}); err != nil {
		t.Fatal(err)
	}
	picked, err := benchtool.PickMembers(ctx, s.App.DB, 8, 5)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int]bool{}
	for _, m := range picked {
		ids[m.ID] = true
	}
	ordersOf := func() map[int]int {
		t.Helper()
		n := map[int]int{}
		for _, o := range s.App.DB.Order.Query().AllX(ctx) {
			n[o.MemberID]++
		}
		return n
	}
	if n := ordersOf(); len(n) != 0 {
		t.Fatalf("orders before minting: %v", n)
	}
	mint := func() {
		t.Helper()
		if err := benchtool.Run(ctx, s.App, benchtool.Options{Count: 8, Seed: 5, WithHistory: true}, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	mint()
	n := ordersOf()
	total := 0
	for id, c := range n {
		if !ids[id] {
			t.Errorf("member %d was not picked and has %d orders", id, c)
		}
		total += c
	}
	if len(n) < 3 {
		t.Errorf("%d of the 8 picked members have orders (%v), want most of them", len(n), n)
	}
	mint()
	if again := s.App.DB.Order.Query().CountX(ctx); again != total {
		t.Errorf("minting again: %d orders, want the %d of the first time", again, total)
	}
	var seeded int
	if err := s.App.SQL.QueryRowContext(ctx, "SELECT count(*) FROM orders WHERE external_id LIKE 'SEED-%'").Scan(&seeded); err != nil || seeded != total {
		t.Errorf("%d of %d orders are the seed's (%v)", seeded, total, err)
	}
}
