package coupon

import (
	"context"
	"slices"
	"testing"
)

// members lists the members of a batch, in order.
func members(batch []*claimReq) []int {
	out := make([]int, len(batch))
	for i, r := range batch {
		out[i] = r.member
	}
	return out
}

// TestClaimerKeepsAMemberOutOfConcurrentBatches: a member's claim waits while
// a batch holding the member runs (the other runner would otherwise lock the
// member's account and wait for that batch's commit), and is served by
// the next batch once the running one ends; the runner that finds only such
// claims retires without stranding them.
func TestClaimerKeepsAMemberOutOfConcurrentBatches(t *testing.T) {
	c := newClaimer()
	req := func(m int) *claimReq {
		return &claimReq{ctx: context.Background(), member: m, done: make(chan claimResult, 1)}
	}
	const tpl = 7
	starts := 0
	for _, m := range []int{1, 2, 1} {
		if c.enqueue(tpl, req(m)) {
			starts++
		}
	}
	if starts != claimRunners {
		t.Fatalf("runners started: %d, want %d", starts, claimRunners)
	}
	a := c.take(tpl, nil) // runner A
	if got := members(a); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("first batch %v, want [1 2]", got)
	}
	// Runner B finds only member 1's second claim, whose batch runs: it
	// retires and leaves the claim queued.
	if b := c.take(tpl, nil); b != nil {
		t.Fatalf("second runner took %v while member 1's batch runs", members(b))
	}
	c.enqueue(tpl, req(3)) // starts a runner again (one is running)
	// Runner A ends its batch: member 1 is free again.
	if got := members(c.take(tpl, a)); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("batch after the first ended: %v, want [1 3]", got)
	}
	if q := c.queues[tpl]; len(q.reqs) != 0 || q.runners != claimRunners {
		t.Fatalf("queue %d claims, %d runners; want 0 and %d", len(q.reqs), q.runners, claimRunners)
	}
}
