package identity_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/signedcode"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/obs"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// outbox keeps the codes the service "sent".
type outbox struct {
	mu   sync.Mutex
	last map[string]string
}

func (o *outbox) SendOTP(_ context.Context, phone, code, purpose string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last[phone+"/"+purpose] = code
	return nil
}

func (o *outbox) code(phone string, purpose identity.Purpose) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last[phone+"/"+string(purpose)]
}

// newService wires identity on a fresh database with the real clock (the
// migration's behaviour partitions cover it).
func newService(t *testing.T) (*identity.Service, *ent.Client, *outbox) {
	t.Helper()
	client, _ := testkit.EntClient(t, 8)
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	tokens, err := token.NewIssuer(key(1), "onemember", 15*time.Minute, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	protector, err := pii.NewProtector(key(2), key(3))
	if err != nil {
		t.Fatal(err)
	}
	codes, err := signedcode.NewSigner(key(4), "member-code", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	sms := &outbox{last: map[string]string{}}
	svc := identity.NewService(identity.Deps{
		DB: client, PII: protector, Sessions: auth.NewSessions(client, tokens, time.Hour, time.Now),
		WeChat: identity.DevWeChat{}, SMS: sms,
		OTP:    identity.OTPPolicy{TTL: 5 * time.Minute, MaxAttempts: 5, PerPhoneHour: 5, PerIPHour: 100},
		OTPKey: key(5), Codes: codes, Log: obs.NewLogger(io.Discard, "text", "error"), Now: time.Now,
	})
	return svc, client, sms
}

func behaviorRows(t testing.TB, db *ent.Client, where string, args ...any) int {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "SELECT count(*) FROM behavior_events WHERE "+where, args...)
	if err != nil {
		t.Fatalf("counting behaviour events: %v", err)
	}
	defer rows.Close()
	var n int
	if !rows.Next() || rows.Scan(&n) != nil {
		t.Fatalf("counting behaviour events: %v", rows.Err())
	}
	return n
}

// TestRegistrationRecordsBehavior: a first sign-in registers the member
// with a REGISTER behaviour event on the member's source channel; signing
// in again records nothing.
func TestRegistrationRecordsBehavior(t *testing.T) {
	svc, db, sms := newService(t)
	first, err := svc.LoginWithWeChat(t.Context(), "wxapp", "dev:openid-1")
	if err != nil || !first.IsNewMember {
		t.Fatalf("first sign-in: %+v, %v", first, err)
	}
	m := first.Member
	if n := behaviorRows(t, db, `source = 's' AND kind = 'REGISTER' AND event_id = $1 AND member_id = $2
		AND channel = 'MINI_PROGRAM' AND occurred_at = $3`, fmt.Sprintf("REGISTER:%d", m.ID), m.ID, m.RegisteredAt); n != 1 {
		t.Fatalf("%d REGISTER events of the new member, want 1", n)
	}
	again, err := svc.LoginWithWeChat(t.Context(), "wxapp", "dev:openid-1")
	if err != nil || again.IsNewMember || again.Member.ID != m.ID {
		t.Fatalf("second sign-in: %+v, %v", again, err)
	}
	if n := behaviorRows(t, db, "kind = 'REGISTER'"); n != 1 {
		t.Fatalf("%d REGISTER events after signing in again, want 1", n)
	}

	// A phone registration from the app: the event's channel is APP.
	const phone = "13812345678"
	if _, err := svc.RequestOTP(t.Context(), phone, identity.PurposeLogin, "127.0.0.1"); err != nil {
		t.Fatalf("RequestOTP: %v", err)
	}
	byPhone, err := svc.LoginWithPhone(t.Context(), phone, sms.code(phone, identity.PurposeLogin), enum.ChannelApp, "")
	if err != nil || !byPhone.IsNewMember {
		t.Fatalf("phone sign-in: %+v, %v", byPhone, err)
	}
	if n := behaviorRows(t, db, "kind = 'REGISTER' AND member_id = $1 AND channel = 'APP'", byPhone.Member.ID); n != 1 {
		t.Fatalf("%d REGISTER events on APP, want 1", n)
	}
}
