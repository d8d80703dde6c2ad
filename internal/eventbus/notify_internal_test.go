package eventbus

import (
	"slices"
	"strconv"
	"testing"
)

func TestNotifyPayloads(t *testing.T) {
	ids := make([]int, 2000)
	for i := range ids {
		ids[i] = 21474836480 + i // production ids have 11 digits
	}
	payloads := notifyPayloads(ids, false)
	if len(payloads) < 3 {
		t.Errorf("2000 ids in %d payloads, want them split", len(payloads))
	}
	var got []int
	for _, p := range payloads {
		if len(p) > notifyMaxBytes {
			t.Errorf("payload of %d bytes, want at most %d", len(p), notifyMaxBytes)
		}
		ps, all := parsePayload(p)
		if all {
			t.Fatalf("payload %q parsed as all", p)
		}
		got = append(got, ps...)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("payloads carry %d ids, want the %d given", len(got), len(ids))
	}

	if p := notifyPayloads(append(ids, 1), false); !slices.Equal(p, []string{"*"}) {
		t.Errorf("2001 ids = %d payloads, want [*]", len(p))
	}
	if p := notifyPayloads([]int{1, 2}, true); !slices.Equal(p, []string{"*"}) {
		t.Errorf("all = %v, want [*]", p)
	}
	if p := notifyPayloads(nil, false); len(p) != 0 {
		t.Errorf("no ids = %v, want none", p)
	}
	if _, all := parsePayload("*"); !all {
		t.Error(`parsePayload("*") is not all`)
	}
	if ids, _ := parsePayload("7,x,," + strconv.Itoa(9)); !slices.Equal(ids, []int{7, 9}) {
		t.Errorf("parsePayload skipping junk = %v, want [7 9]", ids)
	}
}
