package graph_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/eventbus"
	"github.com/onemember/onemember/internal/platform/gqlws"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/migrations"
)

// A server process killed with SIGKILL while it ingests orders loses
// nothing it committed: every order row in the database has its
// PointsChanged event (written in the same transaction), and a subscriber
// on another server sharing the database receives exactly one event per
// committed order of its member, in seq order, including the orders whose
// writer died before it could wake anyone (NOTIFY never sent; the other
// server's safety tailer finds them by transaction id).
//
// The killed server is the real binary (go build of the repository root)
// on a pgtest database; the subscriber side and the setup run on an
// in-process server (apptest.StartOn) on the same database.
func TestKilledServerLosesNothingCommitted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := killBuildServer(t)
	dsn := pgtest.New(t, migrations.FS)
	s := apptest.StartOn(t, dsn)
	s.Seed()
	till := s.Till(s.AdminToken())
	ingest := apptest.Op(t, "IngestOrder")
	subscription := apptest.Op(t, "MemberEvents")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Members, each with a live subscription on the in-process server that
	// starts at the member's current head (so nothing committed later can
	// fall between subscribing and the first read).
	const nMembers = 4
	members := make([]*killMember, nMembers)
	for i := range members {
		tok, id := s.PhoneMember(fmt.Sprintf("1370009%04d", 100+i))
		mid, err := strconv.Atoi(id)
		if err != nil {
			t.Fatalf("member id %q: %v", id, err)
		}
		var head int64
		if err := s.SQL.QueryRowContext(ctx, `SELECT COALESCE((SELECT event_seq FROM accounts WHERE member_id = $1), 0)`, mid).Scan(&head); err != nil {
			t.Fatal(err)
		}
		c, err := gqlws.Dial(ctx, s.WSURL(), gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer " + tok})
		if err != nil {
			t.Fatalf("dialing as member %d: %v", mid, err)
		}
		t.Cleanup(func() { c.Close() })
		sub, err := c.Subscribe(ctx, subscription, map[string]any{"after": eventbus.EncodeCursor(mid, head)})
		if err != nil {
			t.Fatal(err)
		}
		m := &killMember{id: mid, head: head}
		members[i] = m
		go m.receive(ctx, sub)
	}

	// One order per member through the in-process server proves every
	// subscription live before the load starts.
	for i, m := range members {
		var out struct{ IngestOrder struct{ Duplicate bool } }
		s.Do(till, ingest, killOrder(fmt.Sprintf("warm-%d", i), m.id, 1000)).Decode(t, &out)
	}
	killWaitFor(t, 10*time.Second, "warm-up events", func() bool {
		for _, m := range members {
			if m.count() < 1 {
				return false
			}
		}
		return true
	})

	proc := killStartServer(t, bin, dsn)

	// Concurrent ingestOrder requests at the process until it dies.
	const workers = 8
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		firstAck = make(chan struct{}) // closed at 2×workers acknowledgements
		ackOnce  sync.Once
		killed   = make(chan struct{})
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 15 * time.Second}
	for w := range workers {
		wg.Go(func() {
			for n := 0; ; n++ {
				ext := fmt.Sprintf("kill-%d-%d", w, n)
				m := members[(w+n)%nMembers]
				resp, err := killPost(ctx, client, proc.url+"/query", till, ingest, killOrder(ext, m.id, int64(1000+100*(n%7))))
				select {
				case <-killed:
					return // answers racing the kill prove nothing either way
				default:
				}
				if err != nil {
					t.Errorf("order %s before the kill: %v", ext, err)
					return
				}
				var out struct{ IngestOrder struct{ Duplicate bool } }
				if len(resp.Errors) > 0 || json.Unmarshal(resp.Data, &out) != nil || out.IngestOrder.Duplicate {
					t.Errorf("order %s: %s %+v", ext, resp.Data, resp.Errors)
					return
				}
				mu.Lock()
				acked[ext] = true
				warm := len(acked) >= 2*workers
				mu.Unlock()
				if warm {
					ackOnce.Do(func() { close(firstAck) })
				}
			}
		})
	}
	// However the test ends from here, the load stops first.
	stopLoad := sync.OnceFunc(func() { close(killed) })
	defer func() { stopLoad(); wg.Wait() }()

	// Kill 100 ms into a warm stream: the first acknowledgements show the
	// process past its cold start, with requests in flight at every moment.
	select {
	case <-firstAck:
	case <-time.After(15 * time.Second):
		t.Fatalf("fewer than %d orders acknowledged by the server process within 15 s", 2*workers)
	}
	time.Sleep(100 * time.Millisecond)
	// Then kill as soon as an order is committed but not yet answered: its
	// writer most likely dies before its coalesced NOTIFY goes out, which
	// leaves the delivery to the other server's tailer (give up waiting for
	// such a moment after 2 s and kill anyway).
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		var n int
		if err := s.SQL.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE external_id LIKE 'kill-%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		answered := len(acked)
		mu.Unlock()
		if n > answered {
			break
		}
		time.Sleep(time.Millisecond)
	}
	stopLoad()
	killedAt := time.Now()
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL: %v", err)
	}
	<-proc.exited
	if ws, ok := proc.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("server process ended with %v before the kill; log:\n%s", proc.cmd.ProcessState, proc.log.String())
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The dead process's sessions finish what it had sent: a COMMIT that
	// reached PostgreSQL before the kill commits after it. Read the
	// database once they are gone.
	killWaitFor(t, 10*time.Second, "the killed server's sessions to end", func() bool {
		var n int
		if err := s.SQL.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`,
			killVictimApp).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})

	// The database: every committed order has exactly one PointsChanged
	// event of its member naming it, with its points.
	committed := map[int]map[string]int64{} // member → external id → points earned
	rows, err := s.SQL.QueryContext(ctx, `SELECT member_id, external_id, points_earned FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			mid    int
			ext    string
			points int64
		)
		if err := rows.Scan(&mid, &ext, &points); err != nil {
			t.Fatal(err)
		}
		if committed[mid] == nil {
			committed[mid] = map[string]int64{}
		}
		committed[mid][ext] = points
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	total, unacked := 0, 0
	for _, m := range members {
		for ext := range committed[m.id] {
			total++
			mu.Lock()
			ok := acked[ext]
			mu.Unlock()
			if !ok && strings.HasPrefix(ext, "kill-") {
				unacked++
			}
		}
	}
	for ext := range acked {
		found := false
		for _, byExt := range committed {
			_, ok := byExt[ext]
			found = found || ok
		}
		if !found {
			t.Errorf("order %s was acknowledged but is not in the database", ext)
		}
	}
	t.Logf("%d orders acknowledged before the kill; %d orders in the database, %d of them committed but never acknowledged",
		len(acked), total, unacked)

	for _, m := range members {
		rows, err := s.SQL.QueryContext(ctx, `SELECT seq, payload->>'reason', (payload->>'pointsDelta')::bigint
			FROM member_events WHERE member_id = $1 AND type = 'POINTS_CHANGED' AND seq > $2 ORDER BY seq`, m.id, m.head)
		if err != nil {
			t.Fatal(err)
		}
		stored := map[string]int64{}
		for rows.Next() {
			var (
				seq    int64
				reason string
				delta  int64
			)
			if err := rows.Scan(&seq, &reason, &delta); err != nil {
				t.Fatal(err)
			}
			ext := killOrderOfReason(reason)
			if _, dup := stored[ext]; dup {
				t.Errorf("member %d: order %s has two PointsChanged events", m.id, ext)
			}
			stored[ext] = delta
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		for ext, points := range committed[m.id] {
			if points <= 0 {
				t.Fatalf("order %s earned %d points: the test needs orders that earn points", ext, points)
			}
			if got, ok := stored[ext]; !ok || got != points {
				t.Errorf("member %d: committed order %s (%d points) has stored event %v (%d points)", m.id, ext, points, ok, got)
			}
		}
		for ext := range stored {
			if _, ok := committed[m.id][ext]; !ok {
				t.Errorf("member %d: PointsChanged event for order %s, which is not in the database", m.id, ext)
			}
		}
		var balance, sum int64
		if err := s.SQL.QueryRowContext(ctx, `SELECT a.points_balance, COALESCE((SELECT sum((e.payload->>'pointsDelta')::bigint)
			FROM member_events e WHERE e.member_id = a.member_id AND e.type = 'POINTS_CHANGED'), 0)
			FROM accounts a WHERE a.member_id = $1`, m.id).Scan(&balance, &sum); err != nil {
			t.Fatal(err)
		}
		if balance != sum {
			t.Errorf("member %d: points balance %d, but its PointsChanged events add up to %d", m.id, balance, sum)
		}
	}

	// The subscribers: exactly one event per committed order, live, after
	// the writer died. NOTIFY may never have been sent for the last commits,
	// so allow a few tailer periods.
	killWaitFor(t, 10*time.Second, "an event per committed order at the subscribers", func() bool {
		for _, m := range members {
			if m.orders() < len(committed[m.id]) {
				return false
			}
		}
		return true
	})
	t.Logf("subscribers had every committed order %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond) // more than a tailer period: duplicates would show
	for _, m := range members {
		m.mu.Lock()
		if m.err != nil {
			t.Errorf("member %d: subscription ended: %v", m.id, m.err)
		}
		got := map[string]int{}
		for _, ev := range m.events {
			if ev.Typename == "PointsChanged" {
				got[killOrderOfReason(ev.Reason)]++
			}
		}
		for ext := range committed[m.id] {
			if got[ext] != 1 {
				t.Errorf("member %d: order %s arrived %d times, want once", m.id, ext, got[ext])
			}
		}
		for ext, n := range got {
			if _, ok := committed[m.id][ext]; !ok {
				t.Errorf("member %d: received %d events of order %s, which is not in the database", m.id, n, ext)
			}
		}
		last := m.head
		for _, ev := range m.events {
			if ev.seq <= last {
				t.Errorf("member %d: cursor seq %d after %d", m.id, ev.seq, last)
			}
			last = ev.seq
		}
		m.mu.Unlock()
	}
}

type killMember struct {
	id   int
	head int64

	mu     sync.Mutex
	events []killEvent
	err    error
}

type killEvent struct {
	Typename string `json:"__typename"`
	Cursor   string `json:"cursor"`
	Reason   string `json:"reason"`
	seq      int64
}

func (m *killMember) receive(ctx context.Context, sub *gqlws.Subscription) {
	for {
		raw, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.mu.Lock()
				m.err = err
				m.mu.Unlock()
			}
			return
		}
		var p struct {
			Data struct {
				MemberEvents killEvent `json:"memberEvents"`
			} `json:"data"`
			Errors json.RawMessage `json:"errors"`
		}
		err = json.Unmarshal(raw, &p)
		ev := p.Data.MemberEvents
		var mid int
		if err == nil {
			if len(p.Errors) > 0 && string(p.Errors) != "null" {
				err = fmt.Errorf("errors: %s", p.Errors)
			} else {
				mid, ev.seq, err = eventbus.DecodeCursor(ev.Cursor)
			}
		}
		m.mu.Lock()
		switch {
		case err != nil:
			m.err = fmt.Errorf("event %s: %v", raw, err)
		case mid != m.id:
			m.err = fmt.Errorf("event of member %d on member %d's subscription", mid, m.id)
		}
		m.events = append(m.events, ev)
		m.mu.Unlock()
	}
}

func (m *killMember) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.events)
}

// orders counts the distinct orders whose PointsChanged arrived.
func (m *killMember) orders() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for _, ev := range m.events {
		if ev.Typename == "PointsChanged" {
			seen[killOrderOfReason(ev.Reason)] = true
		}
	}
	return len(seen)
}

// killOrderOfReason is the external id in an order's points reason
// ("订单 <externalId>", internal/order).
func killOrderOfReason(reason string) string {
	const prefix = "订单 "
	if ext, ok := strings.CutPrefix(reason, prefix); ok {
		return ext
	}
	return "?" + reason
}

func killOrder(externalID string, memberID int, amount int64) map[string]any {
	return map[string]any{"input": map[string]any{
		"externalId": externalID, "channel": "POS", "storeCode": "SUPER-SH-01",
		"member": map[string]any{"memberId": strconv.Itoa(memberID)}, "paidAt": time.Now().Add(-time.Minute).Format(time.RFC3339),
		"amount": amount, "payments": []map[string]any{{"method": "CASH", "amount": amount}},
		"items": []map[string]any{{"sku": "SKU-1", "name": "有机牛奶", "quantity": 1, "unitPrice": amount, "amount": amount}},
	}}
}

func killPost(ctx context.Context, c *http.Client, url, bearer, query string, vars map[string]any) (apptest.Response, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return apptest.Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	res, err := c.Do(req)
	if err != nil {
		return apptest.Response{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return apptest.Response{}, err
	}
	var out apptest.Response
	if err := json.Unmarshal(raw, &out); err != nil {
		return apptest.Response{}, fmt.Errorf("HTTP %d: %s", res.StatusCode, raw)
	}
	return out, nil
}

func killWaitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killBuildServer builds the repository's server command into a
// temporary directory.
func killBuildServer(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test file")
	}
	root := filepath.Dir(filepath.Dir(file))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "server")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Dir = root
	cmd.Env = os.Environ()
	if os.Getenv("GOFLAGS") == "" {
		cmd.Env = append(cmd.Env, "GOFLAGS=-mod=mod")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type killProcess struct {
	cmd    *exec.Cmd
	url    string
	log    *killLog
	exited chan struct{}
}

// killStartServer runs "server serve" on dsn with the keys of
// apptest.Config, so that both servers accept the same tokens and read the
// same protected data, and waits until it is ready.
// killVictimApp is the application_name of the killed server's sessions.
const killVictimApp = "kill-test-victim"

func killStartServer(t *testing.T, bin, dsn string) *killProcess {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	key := func(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) }
	p := &killProcess{url: "http://" + addr, log: &killLog{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"DATABASE_URL=" + dsn, "PGAPPNAME=" + killVictimApp, "LISTEN_ADDR=" + addr, "LOG_LEVEL=warn", "APP_ENV=development",
		"JWT_SECRET=" + key(1), "PII_ENCRYPTION_KEY=" + key(2), "PII_INDEX_KEY=" + key(3), "CODE_SIGNING_KEY=" + key(4),
		"DEV_KEYS_FILE=" + filepath.Join(t.TempDir(), "dev-keys.json"),
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			t.Fatalf("server process exited during start-up: %v\n%s", p.cmd.ProcessState, p.log.String())
		default:
		}
		res, err := http.Get(p.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server process not ready after 30 s: %v\n%s", err, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type killLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *killLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *killLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
