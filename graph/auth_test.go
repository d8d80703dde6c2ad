package graph_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/staff"
	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/platform/config"
	"github.com/onemember/onemember/internal/platform/gqlws"
)

type authPayload struct {
	AccessToken  string
	RefreshToken string
	ExpiresAt    time.Time
	IsNewMember  bool
	Member       struct{ ID, MemberNo string }
}

func wantCode(t *testing.T, r apptest.Response, code string) {
	t.Helper()
	if len(r.Errors) == 0 {
		t.Fatalf("want error %s, got data %s", code, r.Data)
	}
	if got := r.Errors[0].Code(); got != code {
		t.Fatalf("want error code %s, got %s (%s)", code, got, r.Errors[0].Message)
	}
}

func TestLoginWithWeChat(t *testing.T) {
	s := apptest.Start(t)
	login := apptest.Op(t, "LoginWithWeChat")
	var first, again, otherApp struct{ LoginWithWeChat authPayload }
	s.Do("", login, map[string]any{"appId": "wx-mall", "code": "dev:openid-1:union-1"}).Decode(t, &first)
	s.Do("", login, map[string]any{"appId": "wx-mall", "code": "dev:openid-1:union-1"}).Decode(t, &again)
	// The same person in another mini-program of the group: same unionid.
	s.Do("", login, map[string]any{"appId": "wx-books", "code": "dev:openid-2:union-1"}).Decode(t, &otherApp)

	if !first.LoginWithWeChat.IsNewMember || again.LoginWithWeChat.IsNewMember || otherApp.LoginWithWeChat.IsNewMember {
		t.Fatalf("isNewMember: first=%v again=%v otherApp=%v", first.LoginWithWeChat.IsNewMember,
			again.LoginWithWeChat.IsNewMember, otherApp.LoginWithWeChat.IsNewMember)
	}
	id := first.LoginWithWeChat.Member.ID
	if again.LoginWithWeChat.Member.ID != id || otherApp.LoginWithWeChat.Member.ID != id {
		t.Fatalf("one person became several members: %s %s %s", id, again.LoginWithWeChat.Member.ID, otherApp.LoginWithWeChat.Member.ID)
	}
	if no := first.LoginWithWeChat.Member.MemberNo; len(no) != 9 {
		t.Fatalf("member number %q is not 8 digits plus a check digit", no)
	}
	var who struct {
		Viewer struct {
			Typename string `json:"__typename"`
			ID       string
			MemberNo string
		}
	}
	s.Do(otherApp.LoginWithWeChat.AccessToken, apptest.Op(t, "WhoAmI"), nil).Decode(t, &who)
	if who.Viewer.Typename != "Member" || who.Viewer.ID != id {
		t.Fatalf("viewer = %+v, want member %s", who.Viewer, id)
	}
	var ids struct {
		Me struct {
			Identities []struct{ Kind, MaskedValue string }
		}
	}
	s.Do(first.LoginWithWeChat.AccessToken, `{ me { identities { kind maskedValue } } }`, nil).Decode(t, &ids)
	if len(ids.Me.Identities) != 3 { // unionid + two openids
		t.Fatalf("identities = %+v, want unionid and two openids", ids.Me.Identities)
	}

	wantCode(t, s.Do("", login, map[string]any{"appId": "wx-mall", "code": "not-a-dev-code"}), "UNAUTHENTICATED")
	wantCode(t, s.Do("", login, map[string]any{"appId": "", "code": ""}), "BAD_USER_INPUT")
}

// Twenty first sign-ins racing with one openid must make one member.
func TestConcurrentFirstLoginMakesOneMember(t *testing.T) {
	s := apptest.Start(t)
	login := apptest.Op(t, "LoginWithWeChat")
	var wg sync.WaitGroup
	ids := make([]string, 20)
	errs := make([]error, 20)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := apptest.Post(s.URL+"/query", "", login, map[string]any{"appId": "wx", "code": "dev:racer"})
			if err != nil || len(r.Errors) > 0 {
				errs[i] = fmt.Errorf("%v %+v", err, r.Errors)
				return
			}
			var out struct{ LoginWithWeChat authPayload }
			_ = json.Unmarshal(r.Data, &out)
			ids[i] = out.LoginWithWeChat.Member.ID
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	if n := len(slices.Compact(slices.Sorted(slices.Values(ids)))); n != 1 {
		t.Fatalf("concurrent first logins created %d members: %v", n, ids)
	}
	if n := s.DB.Member.Query().CountX(context.Background()); n != 1 {
		t.Fatalf("%d members in the database, want 1", n)
	}
}

func TestLoginWithPhoneAndOTPLockout(t *testing.T) {
	s := apptest.Start(t)
	const phone = "138 0013 8000"
	var req struct {
		RequestOtp struct{ RetryAfterSeconds int }
	}
	s.Do("", apptest.Op(t, "RequestOtp"), map[string]any{"phone": phone}).Decode(t, &req)
	code := s.SMS.Code("13800138000", "LOGIN")
	if len(code) != 6 {
		t.Fatalf("no code sent: %q", code)
	}
	login := apptest.Op(t, "LoginWithPhone")
	var out struct{ LoginWithPhone authPayload }
	s.Do("", login, map[string]any{"phone": phone, "otp": code}).Decode(t, &out)
	if !out.LoginWithPhone.IsNewMember {
		t.Fatal("first phone login did not register a member")
	}
	// The code is consumed.
	wantCode(t, s.Do("", login, map[string]any{"phone": phone, "otp": code}), "BAD_USER_INPUT")

	// Guessing: five wrong codes kill the challenge, even for the right code.
	s.Do("", apptest.Op(t, "RequestOtp"), map[string]any{"phone": phone}).Decode(t, &req)
	code = s.SMS.Code("13800138000", "LOGIN")
	wrong := fmt.Sprintf("%06d", (atoi(code)+1)%1_000_000)
	for i := 0; i < 5; i++ {
		wantCode(t, s.Do("", login, map[string]any{"phone": phone, "otp": wrong}), "BAD_USER_INPUT")
	}
	wantCode(t, s.Do("", login, map[string]any{"phone": phone, "otp": code}), "RATE_LIMITED")

	// Per-phone send limit (5 an hour in tests): two sent, three more, then refused.
	for i := 0; i < 3; i++ {
		s.Do("", apptest.Op(t, "RequestOtp"), map[string]any{"phone": phone}).Decode(t, &req)
	}
	wantCode(t, s.Do("", apptest.Op(t, "RequestOtp"), map[string]any{"phone": phone}), "RATE_LIMITED")
	wantCode(t, s.Do("", apptest.Op(t, "RequestOtp"), map[string]any{"phone": "12345"}), "BAD_USER_INPUT")

	// A bind code does not sign in.
	const other = "13900139000"
	s.Do("", apptest.Op(t, "RequestBindOtp"), map[string]any{"phone": other}).Decode(t, &req)
	wantCode(t, s.Do("", login, map[string]any{"phone": other, "otp": s.SMS.Code(other, "BIND_PHONE")}), "BAD_USER_INPUT")
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestRefreshRotationReuseAndLogout(t *testing.T) {
	s := apptest.Start(t)
	var login struct{ LoginWithWeChat authPayload }
	s.Do("", apptest.Op(t, "LoginWithWeChat"), map[string]any{"appId": "wx", "code": "dev:rotator"}).Decode(t, &login)
	refresh := apptest.Op(t, "RefreshToken")
	var r1 struct{ RefreshToken authPayload }
	s.Do("", refresh, map[string]any{"refreshToken": login.LoginWithWeChat.RefreshToken}).Decode(t, &r1)
	if r1.RefreshToken.RefreshToken == login.LoginWithWeChat.RefreshToken || r1.RefreshToken.AccessToken == "" {
		t.Fatal("refresh did not rotate")
	}
	// Replaying the first token: reuse revokes the whole family.
	wantCode(t, s.Do("", refresh, map[string]any{"refreshToken": login.LoginWithWeChat.RefreshToken}), "UNAUTHENTICATED")
	wantCode(t, s.Do("", refresh, map[string]any{"refreshToken": r1.RefreshToken.RefreshToken}), "UNAUTHENTICATED")

	// Logout ends a fresh session's refresh tokens.
	var l2 struct{ LoginWithWeChat authPayload }
	s.Do("", apptest.Op(t, "LoginWithWeChat"), map[string]any{"appId": "wx", "code": "dev:rotator"}).Decode(t, &l2)
	var out struct{ Logout struct{ Ok bool } }
	s.Do(l2.LoginWithWeChat.AccessToken, apptest.Op(t, "Logout"), nil).Decode(t, &out)
	wantCode(t, s.Do("", refresh, map[string]any{"refreshToken": l2.LoginWithWeChat.RefreshToken}), "UNAUTHENTICATED")
	wantCode(t, s.Do("", apptest.Op(t, "Logout"), nil), "UNAUTHENTICATED")
	wantCode(t, s.Do("", refresh, map[string]any{"refreshToken": "omr_garbage"}), "UNAUTHENTICATED")
}

func TestStaffSignInRolesAndAPIClients(t *testing.T) {
	s := apptest.Start(t)
	ctx := context.Background()
	bu, err := s.DB.BusinessUnit.Create().SetCode("SUPER").SetName("鲜汇超市").SetKind("SUPERMARKET").Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DB.Store.Create().SetCode("SUPER-SH-01").SetName("浦东店").SetBusinessUnitID(bu.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	admin := s.StaffToken("admin@example.com", enum.RoleAdmin)
	var who struct {
		Viewer struct {
			Typename string `json:"__typename"`
			Email    string
			Roles    []string
		}
	}
	s.Do(admin, apptest.Op(t, "WhoAmI"), nil).Decode(t, &who)
	if who.Viewer.Typename != "Staff" || who.Viewer.Email != "admin@example.com" || !slices.Equal(who.Viewer.Roles, []string{"ADMIN"}) {
		t.Fatalf("viewer = %+v", who.Viewer)
	}
	wantCode(t, s.Do("", apptest.Op(t, "AdminLogin"), map[string]any{"email": "admin@example.com", "password": "wrong password"}), "UNAUTHENTICATED")
	wantCode(t, s.Do("", apptest.Op(t, "AdminLogin"), map[string]any{"email": "nobody@example.com", "password": "wrong password"}), "UNAUTHENTICATED")

	create := apptest.Op(t, "CreateStaff")
	analystIn := map[string]any{"input": map[string]any{
		"email": "Analyst@Example.com", "displayName": "分析师", "password": "long enough password",
		"roles": []string{"ANALYST"}, "businessUnitCodes": []string{"SUPER"},
	}}
	var created struct {
		CreateStaff struct{ Staff struct{ Email string } }
	}
	s.Do(admin, create, analystIn).Decode(t, &created)
	if created.CreateStaff.Staff.Email != "analyst@example.com" {
		t.Fatalf("e-mail not normalized: %q", created.CreateStaff.Staff.Email)
	}
	wantCode(t, s.Do(admin, create, analystIn), "CONFLICT")

	// Bad input names every field and writes nothing.
	before := s.DB.Staff.Query().CountX(ctx)
	r := s.Do(admin, create, map[string]any{"input": map[string]any{
		"email": "not-an-email", "displayName": " ", "password": "short", "roles": []string{}, "businessUnitCodes": []string{"NOPE"},
	}})
	wantCode(t, r, "BAD_USER_INPUT")
	fields, _ := r.Errors[0].Extensions["fields"].([]any)
	for _, f := range []string{"email", "displayName", "password", "roles"} {
		if !slices.Contains(fields, any(f)) {
			t.Errorf("error does not name %s: %v", f, r.Errors[0].Extensions)
		}
	}
	wantCode(t, s.Do(admin, create, map[string]any{"input": map[string]any{
		"email": "x@example.com", "displayName": "x", "password": "long enough password", "roles": []string{"OPERATOR"}, "businessUnitCodes": []string{"NOPE"},
	}}), "BAD_USER_INPUT")
	if after := s.DB.Staff.Query().CountX(ctx); after != before {
		t.Fatalf("bad input wrote staff: %d → %d", before, after)
	}

	// Roles are enforced: analysts and members cannot create accounts.
	var analystLogin struct{ AdminLogin struct{ AccessToken string } }
	s.Do("", apptest.Op(t, "AdminLogin"), map[string]any{"email": "analyst@example.com", "password": "long enough password"}).Decode(t, &analystLogin)
	analyst := analystLogin.AdminLogin.AccessToken
	wantCode(t, s.Do(analyst, create, analystIn), "FORBIDDEN")
	member, _ := s.MemberToken("curious-member")
	wantCode(t, s.Do(member, create, analystIn), "FORBIDDEN")
	wantCode(t, s.Do(member, `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": "1"}), "FORBIDDEN")
	wantCode(t, s.Do("", create, analystIn), "UNAUTHENTICATED")
	wantCode(t, s.Do(admin, `{ me { id } }`, nil), "FORBIDDEN")

	// Integrations: the secret is shown once, works as a bearer, and
	// carries its scopes.
	var api struct {
		CreateApiClient struct {
			APIClient struct {
				ID     string
				Scopes []string
			} `json:"apiClient"`
			Secret string
		}
	}
	s.Do(admin, apptest.Op(t, "CreateApiClient"), map[string]any{
		"name": "浦东店收银", "scopes": []string{"ORDERS_WRITE", "MEMBERS_READ"}, "storeCodes": []string{"SUPER-SH-01"},
	}).Decode(t, &api)
	if !strings.HasPrefix(api.CreateApiClient.Secret, "oms_") {
		t.Fatalf("secret %q", api.CreateApiClient.Secret)
	}
	var till struct {
		Viewer struct {
			Typename string `json:"__typename"`
			ID       string
			Scopes   []string
		}
	}
	s.Do(api.CreateApiClient.Secret, apptest.Op(t, "WhoAmI"), nil).Decode(t, &till)
	if till.Viewer.Typename != "ApiClient" || till.Viewer.ID != api.CreateApiClient.APIClient.ID || len(till.Viewer.Scopes) != 2 {
		t.Fatalf("api client viewer = %+v", till.Viewer)
	}
	wantCode(t, s.Do(api.CreateApiClient.Secret, create, analystIn), "FORBIDDEN")
	wantCode(t, s.Do("oms_not-a-real-secret", apptest.Op(t, "WhoAmI"), nil), "UNAUTHENTICATED")
	wantCode(t, s.Do(admin, apptest.Op(t, "CreateApiClient"), map[string]any{
		"name": "x", "scopes": []string{"ORDERS_WRITE"}, "storeCodes": []string{"NO-SUCH-STORE"},
	}), "BAD_USER_INPUT")
	wantCode(t, s.Do(admin, apptest.Op(t, "CreateApiClient"), map[string]any{"name": "x", "scopes": []string{"NOT_A_SCOPE"}}), "BAD_USER_INPUT")

	// A disabled account's token stops working at once.
	s.DB.Staff.Update().Where(staff.Email("analyst@example.com")).SetActive(false).ExecX(ctx)
	wantCode(t, s.Do(analyst, apptest.Op(t, "WhoAmI"), nil), "UNAUTHENTICATED")
}

func TestAnalystSeesPersonalDataMasked(t *testing.T) {
	s := apptest.Start(t)
	var req struct {
		RequestOtp struct{ RetryAfterSeconds int }
	}
	s.Do("", apptest.Op(t, "RequestOtp"), map[string]any{"phone": "13812341234"}).Decode(t, &req)
	var login struct{ LoginWithPhone authPayload }
	s.Do("", apptest.Op(t, "LoginWithPhone"), map[string]any{"phone": "13812341234", "otp": s.SMS.Code("13812341234", "LOGIN")}).Decode(t, &login)
	const q = `query($id: ID!) { node(id: $id) { ... on Member { phone identities { kind maskedValue } } } }`
	type view struct {
		Node struct {
			Phone      string
			Identities []struct{ Kind, MaskedValue string }
		}
	}
	var byAdmin, byAnalyst view
	s.Do(s.StaffToken("a@example.com", enum.RoleAdmin), q, map[string]any{"id": login.LoginWithPhone.Member.ID}).Decode(t, &byAdmin)
	s.Do(s.StaffToken("b@example.com", enum.RoleAnalyst), q, map[string]any{"id": login.LoginWithPhone.Member.ID}).Decode(t, &byAnalyst)
	if byAdmin.Node.Phone != "13812341234" {
		t.Fatalf("admin sees phone %q", byAdmin.Node.Phone)
	}
	if byAnalyst.Node.Phone != "138****1234" {
		t.Fatalf("analyst sees phone %q, want it masked", byAnalyst.Node.Phone)
	}
	if len(byAdmin.Node.Identities) != 1 || byAdmin.Node.Identities[0].MaskedValue != "138****1234" {
		t.Fatalf("identities = %+v", byAdmin.Node.Identities)
	}
	// The member sees its own phone in clear.
	var me struct{ Me struct{ Phone string } }
	s.Do(login.LoginWithPhone.AccessToken, `{ me { phone } }`, nil).Decode(t, &me)
	if me.Me.Phone != "13812341234" {
		t.Fatalf("member sees own phone %q", me.Me.Phone)
	}
}

func TestRejectedTokens(t *testing.T) {
	s := apptest.Start(t)
	good, memberID := s.MemberToken("holder")
	id := 0
	fmt.Sscan(memberID, &id)
	key := s.Config.Keys.JWT
	past, err := token.NewIssuer(key, "onemember", time.Minute, func() time.Time { return time.Now().Add(-time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	expired, _, _ := past.Issue(token.KindMember, id, "sid")
	otherKey, _ := token.NewIssuer([]byte(strings.Repeat("x", 32)), "onemember", time.Minute, time.Now)
	forged, _, _ := otherKey.Issue(token.KindMember, id, "sid")
	claims := jwt.MapClaims{"iss": "onemember", "sub": memberID, "aud": []string{"some-other-service"},
		"exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix(), "nbf": time.Now().Unix(), "jti": "x"}
	wrongAud, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	tampered := good[:len(good)-3] + "abc"

	for name, tok := range map[string]string{"expired": expired, "forged": forged, "wrong audience": wrongAud, "tampered": tampered, "garbage": "abc.def.ghi"} {
		t.Run(name, func(t *testing.T) {
			wantCode(t, s.Do(tok, `{ me { id } }`, nil), "UNAUTHENTICATED")
			wantCode(t, s.Do(tok, apptest.Op(t, "WhoAmI"), nil), "UNAUTHENTICATED")
		})
	}
	// A stale access token does not block signing in again.
	var again struct{ LoginWithWeChat authPayload }
	r, _ := apptest.Post(s.URL+"/query", expired, apptest.Op(t, "LoginWithWeChat"), map[string]any{"appId": "wx", "code": "dev:holder"})
	r.Decode(t, &again)
	// Basic auth is not a bearer token.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/query", strings.NewReader(`{"query":"{ me { id } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body apptest.Response
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	wantCode(t, body, "UNAUTHENTICATED")
}

func TestWebsocketAuthentication(t *testing.T) {
	s := apptest.Start(t)
	member, _ := s.MemberToken("ws-member")
	ctx := context.Background()
	for _, proto := range []string{gqlws.SubprotocolGraphQLTransportWS, gqlws.SubprotocolGraphQLWS} {
		t.Run(proto, func(t *testing.T) {
			for name, tc := range map[string]struct {
				payload map[string]any
				code    int
			}{
				"no token":  {map[string]any{}, 4401},
				"bad token": {map[string]any{"authorization": "Bearer not.a.token"}, 4401},
			} {
				_, err := gqlws.Dial(ctx, s.WSURL(), proto, tc.payload)
				var ce *gqlws.CloseError
				if !errors.As(err, &ce) || ce.Code != tc.code {
					t.Errorf("%s: dial error %v, want close %d", name, err, tc.code)
				}
			}
			c, err := gqlws.Dial(ctx, s.WSURL(), proto, map[string]any{"authorization": "Bearer " + member})
			if err != nil {
				t.Fatalf("valid token refused: %v", err)
			}
			c.Close()
		})
	}
	// A disabled staff account is closed with 4403.
	staffTok := s.StaffToken("gone@example.com", enum.RoleOperator)
	s.DB.Staff.Update().Where(staff.Email("gone@example.com")).SetActive(false).ExecX(ctx)
	_, err := gqlws.Dial(ctx, s.WSURL(), gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer " + staffTok})
	var ce *gqlws.CloseError
	if !errors.As(err, &ce) || ce.Code != 4403 {
		t.Fatalf("disabled account: %v, want close 4403", err)
	}
}

// In production the server asks WeChat (a local fake here), hides
// introspection and GraphiQL.
func TestProductionMode(t *testing.T) {
	var calls int
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		q := r.URL.Query()
		if r.URL.Path != "/sns/jscode2session" || q.Get("appid") != "wx-prod" || q.Get("secret") != "s3cret" || q.Get("grant_type") != "authorization_code" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if q.Get("js_code") == "used" {
			_, _ = w.Write([]byte(`{"errcode":40163,"errmsg":"code been used"}`))
			return
		}
		_, _ = w.Write([]byte(`{"openid":"o-` + q.Get("js_code") + `","session_key":"k","unionid":"u-1"}`))
	}))
	defer fake.Close()
	s := apptest.Start(t, apptest.Production(), func(c *config.Config, o *app.Options) {
		o.WeChat = identity.WeChatAPI{BaseURL: fake.URL, Secrets: map[string]string{"wx-prod": "s3cret"}}
	})
	var out struct{ LoginWithWeChat authPayload }
	s.Do("", apptest.Op(t, "LoginWithWeChat"), map[string]any{"appId": "wx-prod", "code": "abc"}).Decode(t, &out)
	if !out.LoginWithWeChat.IsNewMember || calls != 1 {
		t.Fatalf("login via WeChat: new=%v calls=%d", out.LoginWithWeChat.IsNewMember, calls)
	}
	wantCode(t, s.Do("", apptest.Op(t, "LoginWithWeChat"), map[string]any{"appId": "wx-prod", "code": "used"}), "UNAUTHENTICATED")
	wantCode(t, s.Do("", apptest.Op(t, "LoginWithWeChat"), map[string]any{"appId": "wx-unknown", "code": "abc"}), "BAD_USER_INPUT")
	// dev: codes get no special treatment in production: WeChat decides.
	before := calls
	s.Do("", apptest.Op(t, "LoginWithWeChat"), map[string]any{"appId": "wx-prod", "code": "dev:someone"}).Decode(t, &out)
	if calls != before+1 {
		t.Fatal("a dev: code bypassed WeChat in production")
	}

	r := s.Do("", `{ __schema { types { name } } }`, nil)
	if len(r.Errors) == 0 {
		t.Fatal("introspection answered in production")
	}
	res, err := http.Get(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GraphiQL in production: HTTP %d", res.StatusCode)
	}
}
