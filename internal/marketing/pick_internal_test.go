package marketing

import (
	"strings"
	"testing"

	"github.com/onemember/onemember/ent"
)

func TestPickFollowsWeights(t *testing.T) {
	prizes := []*ent.LotteryPrize{{Weight: 1}, {Weight: 3}, {Weight: 6}}
	// r in [0,1) → 0, [1,4) → 1, [4,10) → 2.
	want := []int{0, 1, 1, 1, 2, 2, 2, 2, 2, 2}
	for r, w := range want {
		got, err := pick(prizes, func(n int64) (int64, error) {
			if n != 10 {
				t.Fatalf("intn(%d), want intn(10)", n)
			}
			return int64(r), nil
		})
		if err != nil || got != w {
			t.Errorf("r=%d: pick = %d, %v; want %d", r, got, err, w)
		}
	}
	if _, err := pick([]*ent.LotteryPrize{{Weight: 0}}, cryptoIntn); err == nil {
		t.Error("pick with no positive weight: want an error")
	}
}

func TestPickWithCryptoRandIsRoughlyFair(t *testing.T) {
	prizes := []*ent.LotteryPrize{{Weight: 1}, {Weight: 3}}
	var counts [2]int
	const n = 20000
	for range n {
		i, err := pick(prizes, cryptoIntn)
		if err != nil {
			t.Fatal(err)
		}
		counts[i]++
	}
	// Expected 5000; 6 standard deviations is about ±370.
	if counts[0] < 4600 || counts[0] > 5400 {
		t.Errorf("weight 1 of 4 picked %d of %d times", counts[0], n)
	}
}

func TestRandomReferralCode(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c, err := randomReferralCode()
		if err != nil {
			t.Fatal(err)
		}
		if len(c) != referralCodeLen {
			t.Fatalf("code %q has %d characters", c, len(c))
		}
		for _, r := range c {
			if !strings.ContainsRune(referralAlphabet, r) {
				t.Fatalf("code %q has %q", c, r)
			}
		}
		seen[c] = true
	}
	if len(seen) < 1000 {
		t.Errorf("%d distinct codes of 1000", len(seen))
	}
	if strings.ContainsAny(referralAlphabet, "01ILO") {
		t.Errorf("alphabet %q has ambiguous characters", referralAlphabet)
	}
}
