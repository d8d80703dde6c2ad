package ledger

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// TestRefundSplitNeverOverRestores splits payments into random partial
// refunds: the parts must never restore more principal or bonus than the
// payment took, and must add up to it exactly.
func TestRefundSplitNeverOverRestores(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	payments := [][2]int64{{5_000, 1_000}, {1, 0}, {0, 1}, {1, 1}, {3, 7}, {4_999_999, 1}, {1, 4_999_999}, {333, 667}}
	for _, pb := range payments {
		paidP, paidB := pb[0], pb[1]
		for range 200 {
			var doneP, doneB int64
			for doneP+doneB < paidP+paidB {
				left := paidP + paidB - doneP - doneB
				amount := 1 + rng.Int64N(left)
				if rng.IntN(4) == 0 {
					amount = min(left, 1+rng.Int64N(3))
				}
				p, b, err := refundSplit(paidP, paidB, doneP, doneB, amount)
				if err != nil {
					t.Fatalf("refundSplit(%d, %d, %d, %d, %d): %v", paidP, paidB, doneP, doneB, amount, err)
				}
				if p < 0 || b < 0 || p+b != amount {
					t.Fatalf("refund %d split %d + %d", amount, p, b)
				}
				doneP, doneB = doneP+p, doneB+b
				if doneP > paidP || doneB > paidB {
					t.Fatalf("payment %d+%d: restored %d+%d", paidP, paidB, doneP, doneB)
				}
				// The split depends only on the total refunded so far.
				total := doneP + doneB
				if want := (total*paidP + paidP + paidB - 1) / (paidP + paidB); doneP != want {
					t.Fatalf("payment %d+%d after %d: principal %d, want ceil rule %d", paidP, paidB, total, doneP, want)
				}
			}
			if doneP != paidP || doneB != paidB {
				t.Fatalf("payment %d+%d: restored %d+%d in all", paidP, paidB, doneP, doneB)
			}
			if _, _, err := refundSplit(paidP, paidB, doneP, doneB, 1); !errors.Is(err, ErrRefundExceedsPayment) {
				t.Fatalf("refund past the payment: %v", err)
			}
		}
	}
}
