package graph_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/platform/config"
	"github.com/onemember/onemember/internal/platform/gqlws"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/migrations"
)

type memberEvent struct {
	MemberEvents struct {
		Typename      string `json:"__typename"`
		Cursor        string
		PointsDelta   int64
		PointsBalance int64
		Direction     string
		To            struct{ Code string }
		Coupon        struct{ Title string }
	}
}

func subscribe(t *testing.T, url, proto, token string, after *string) *gqlws.Subscription {
	t.Helper()
	c, err := gqlws.Dial(t.Context(), url, proto, map[string]any{"authorization": "Bearer " + token})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	vars := map[string]any{}
	if after != nil {
		vars["after"] = *after
	}
	sub, err := c.Subscribe(t.Context(), apptest.Op(t, "MemberEvents"), vars)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return sub
}

func next(t *testing.T, sub *gqlws.Subscription) memberEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	raw, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("next event: %v", err)
	}
	var ev struct{ Data memberEvent }
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return ev.Data
}

// An order ingested through one server reaches the member's subscription
// on another server (two replicas on one database), over both websocket
// subprotocols; reconnecting with the last cursor replays exactly what was
// missed.
func TestMemberEventsAcrossReplicasAndResume(t *testing.T) {
	dsn := pgtest.New(t, migrations.FS)
	a := apptest.StartOn(t, dsn)
	a.Seed()
	b := apptest.StartOn(t, dsn)
	till := a.Till(a.AdminToken())
	member, memberID := a.PhoneMember("13800000041")

	for i, proto := range []string{gqlws.SubprotocolGraphQLTransportWS, gqlws.SubprotocolGraphQLWS} {
		sub := subscribe(t, b.WSURL(), proto, member, nil)
		time.Sleep(100 * time.Millisecond) // the subscription is registered
		a.Do(till, apptest.Op(t, "IngestOrder"), order(fmt.Sprintf("ev-%d", i), memberID, 10000, time.Now().Add(-time.Minute))).Decode(t, &struct{}{})
		got := map[string]memberEvent{}
		for n := 0; got["PointsChanged"].MemberEvents.Cursor == ""; n++ {
			if n == 3 {
				t.Fatalf("%s: no PointsChanged among %+v", proto, got)
			}
			ev := next(t, sub)
			got[ev.MemberEvents.Typename] = ev
		}
		if p := got["PointsChanged"].MemberEvents; p.PointsDelta <= 0 || p.PointsBalance < p.PointsDelta {
			t.Fatalf("%s: points event %+v", proto, p)
		}
	}

	// Resume: note the cursor, miss two orders, reconnect with it.
	sub := subscribe(t, b.WSURL(), gqlws.SubprotocolGraphQLTransportWS, member, nil)
	time.Sleep(100 * time.Millisecond)
	a.Do(till, apptest.Op(t, "IngestOrder"), order("ev-resume-0", memberID, 100, time.Now().Add(-time.Minute))).Decode(t, &struct{}{})
	last := next(t, sub).MemberEvents
	for i := 1; i <= 2; i++ {
		a.Do(till, apptest.Op(t, "IngestOrder"), order(fmt.Sprintf("ev-resume-%d", i), memberID, 100, time.Now().Add(-time.Minute))).Decode(t, &struct{}{})
	}
	resumed := subscribe(t, a.WSURL(), gqlws.SubprotocolGraphQLWS, member, &last.Cursor)
	for i := 1; i <= 2; i++ {
		ev := next(t, resumed).MemberEvents
		if ev.Typename != "PointsChanged" || ev.PointsBalance != last.PointsBalance+int64(i) {
			t.Fatalf("resumed event %d: %+v after %+v", i, ev, last)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	if raw, err := resumed.Next(ctx); err == nil {
		t.Fatalf("an event beyond the missed ones: %s", raw)
	}

	// Bad cursors.
	bad := "not-a-cursor"
	c, err := gqlws.Dial(t.Context(), a.WSURL(), gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer " + member})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s2, err := c.Subscribe(t.Context(), apptest.Op(t, "MemberEvents"), map[string]any{"after": bad})
	var raw json.RawMessage
	if err == nil {
		raw, err = s2.Next(t.Context())
	}
	// gqlgen answers a subscription that fails at its start with a result
	// carrying errors (graphql-transport-ws "next"), older servers with an
	// "error" message; either must say BAD_USER_INPUT.
	var opErr *gqlws.OperationError
	if errors.As(err, &opErr) {
		raw = json.RawMessage(`{"errors":` + string(opErr.Payload) + `}`)
	} else if err != nil {
		t.Fatalf("bad cursor: %v", err)
	}
	var res struct {
		Errors []struct{ Extensions struct{ Code string } }
	}
	if json.Unmarshal(raw, &res) != nil || len(res.Errors) != 1 || res.Errors[0].Extensions.Code != "BAD_USER_INPUT" {
		t.Fatalf("bad cursor answered %s", raw)
	}
}

// When the access token of connection_init expires, the server closes the
// socket with 4401 so the app reconnects with a fresh token and its cursor.
func TestMemberEventsCloseWhenTokenExpires(t *testing.T) {
	s := apptest.Start(t, func(c *config.Config, _ *app.Options) { c.AccessTokenTTL = 2 * time.Second })
	s.Seed()
	member, _ := s.PhoneMember("13800000051")
	c, err := gqlws.Dial(t.Context(), s.WSURL(), gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer " + member})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Subscribe(t.Context(), apptest.Op(t, "MemberEvents"), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open 10 s after its token expired")
	}
	if code, _ := c.CloseCode(); code != 4401 {
		t.Fatalf("close code %d, want 4401", code)
	}
}

// One connection carries at most four subscriptions.
func TestMemberEventsSubscriptionsPerConnection(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	member, _ := s.PhoneMember("13800000061")
	c, err := gqlws.Dial(t.Context(), s.WSURL(), gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer " + member})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var subs []*gqlws.Subscription
	for range 5 {
		sub, err := c.Subscribe(t.Context(), apptest.Op(t, "MemberEvents"), nil)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	// gqlgen starts operations concurrently, so any one of the five may be
	// the one refused: exactly one must be, and the other four stay open.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	codes := make(chan string, len(subs))
	for _, sub := range subs {
		go func() {
			raw, err := sub.Next(ctx)
			var opErr *gqlws.OperationError
			switch {
			case errors.As(err, &opErr):
				raw = json.RawMessage(`{"errors":` + string(opErr.Payload) + `}`)
			case errors.Is(err, context.DeadlineExceeded):
				codes <- "open"
				return
			case err != nil:
				codes <- err.Error()
				return
			}
			var res struct {
				Errors []struct{ Extensions struct{ Code string } }
			}
			if json.Unmarshal(raw, &res) != nil || len(res.Errors) != 1 {
				codes <- string(raw)
				return
			}
			codes <- res.Errors[0].Extensions.Code
		}()
	}
	got := map[string]int{}
	for range subs {
		got[<-codes]++
	}
	if got["LIMIT_EXCEEDED"] != 1 || got["open"] != 4 {
		t.Fatalf("five subscriptions on one connection: %v, want one LIMIT_EXCEEDED and four open", got)
	}
}
