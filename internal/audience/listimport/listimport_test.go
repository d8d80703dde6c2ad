package listimport_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	entidentity "github.com/onemember/onemember/ent/identity"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience/listimport"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

type env struct {
	db        *ent.Client
	sql       *sql.DB
	protector *pii.Protector
	stmts     *database.StatementCounter
}

func newEnv(t *testing.T) *env {
	t.Helper()
	_, sqlDB := testkit.EntClient(t, 8)
	stmts := &database.StatementCounter{}
	client := ent.NewClient(ent.Driver(database.Counting(entsql.OpenDB(dialect.Postgres, sqlDB), stmts)))
	p, err := pii.NewProtector(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: client, sql: sqlDB, protector: p, stmts: stmts}
}

func (e *env) lookupPhone(p string) []byte {
	return identity.LookupKey(e.protector, entidentity.KindPHONE, "", p)
}

// members creates members numbered T000000..T<n-1> in one statement and
// returns their ids in that order.
func (e *env) members(t *testing.T, n int) []int {
	t.Helper()
	bulk := make([]*ent.MemberCreate, n)
	for i := range bulk {
		bulk[i] = e.db.Member.Create().SetMemberNo(memberNo(i)).SetSourceChannel(enum.ChannelPOS)
	}
	ms, err := e.db.Member.CreateBulk(bulk...).Save(t.Context())
	if err != nil {
		t.Fatalf("creating members: %v", err)
	}
	ids := make([]int, n)
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

func (e *env) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := e.sql.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func memberNo(i int) string { return fmt.Sprintf("T%06d", i) }

// run imports r and returns the counts and the members added, sorted.
func (e *env) run(t *testing.T, key listimport.Key, r io.Reader) (listimport.Counts, []int) {
	t.Helper()
	var added []int
	counts, err := listimport.Import(t.Context(), e.db, e.lookupPhone, key, r, func(id int) { added = append(added, id) })
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	slices.Sort(added)
	return counts, added
}

// The big list's members: 2,000, with every 100 a frozen one (live), an
// erased one (not found), one merged into the next member, and one merged
// into that merged one (two hops).
const population = 2000

func survivor(i int) (int, bool) {
	switch i % 100 {
	case 2:
		return 0, false // erased
	case 3:
		return i + 1, true
	case 5:
		return i - 1, true // via i-2, merged into i-1
	}
	return i, true
}

// kindOf says what the i-th line of the big list is: "blank", "header",
// "invalid", "unmatched" or "member" (then member is its member's index).
func kindOf(i int) (kind string, member int) {
	switch {
	case i == 0:
		return "header", 0
	case i%97 == 0:
		return "blank", 0
	case i%50 == 1:
		return "invalid", 0
	case i%50 == 2:
		return "unmatched", 0
	}
	return "member", i * 7919 % population
}

// line is the i-th line of the big list, without its line ending.
func line(i int) string {
	kind, m := kindOf(i)
	switch kind {
	case "header":
		return "\xEF\xBB\xBFmember_no,name,points"
	case "blank":
		return [...]string{"", "  ", ",,", "\t;"}[i/97%4]
	case "invalid":
		return [...]string{"bad key!", ",T000001", strings.Repeat("A", 33), "会员", "T00 0001,x"}[i/50%5]
	case "unmatched":
		return fmt.Sprintf("U%07d,never registered", i)
	}
	switch i % 4 {
	case 0:
		return fmt.Sprintf("%q,\"Zhang, San\",%d", memberNo(m), i)
	case 1:
		return "  " + memberNo(m) + "  "
	}
	return memberNo(m) + ",李四,0123456789,gold,2025-03-10"
}

// listReader produces the big list on the fly, and samples the heap as
// the importer reads.
type listReader struct {
	i, n    int
	pending []byte
	bytes   int64
	peak    uint64
}

func (r *listReader) Read(p []byte) (int, error) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.peak = max(r.peak, ms.HeapAlloc)
	n := 0
	for n < len(p) {
		if len(r.pending) == 0 {
			if r.i == r.n {
				break
			}
			text := line(r.i)
			end := "\n"
			if r.i%3 == 0 {
				end = "\r\n"
			}
			r.pending = append(r.pending[:0], text+end...)
			r.i++
		}
		c := copy(p[n:], r.pending)
		r.pending = r.pending[c:]
		n += c
	}
	r.bytes += int64(n)
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// TestImportMillionLines: a list of 1,000,000 member-number lines with bad
// lines mixed in, against 2,000 members: exact counts, each live member
// once, and a heap that does not grow with the list.
func TestImportMillionLines(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, population)
	for i := range population {
		switch i % 100 {
		case 1:
			e.exec(t, "UPDATE members SET status = 'FROZEN' WHERE id = $1", ids[i])
		case 2:
			e.exec(t, "UPDATE members SET status = 'ERASED' WHERE id = $1", ids[i])
		case 3:
			e.exec(t, "UPDATE members SET status = 'MERGED', merged_into_id = $2 WHERE id = $1", ids[i], ids[i+1])
		case 5:
			e.exec(t, "UPDATE members SET status = 'MERGED', merged_into_id = $2 WHERE id = $1", ids[i], ids[i-2])
		}
	}

	const lines = 1_000_000
	var want listimport.Counts
	wantAdded := map[int]bool{}
	for i := range lines {
		kind, m := kindOf(i)
		switch kind {
		case "invalid":
			want.Lines++
			want.Invalid++
		case "unmatched":
			want.Lines++
			want.Unmatched++
		case "member":
			want.Lines++
			if s, ok := survivor(m); ok {
				want.Matched++
				wantAdded[ids[s]] = true
			} else {
				want.Unmatched++
			}
		}
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	r := &listReader{n: lines}
	started := time.Now()
	counts, added := e.run(t, listimport.KeyMemberNo, r)
	t.Logf("%d lines, %.1f MB, in %v; heap peak %.1f MB above the start",
		lines, float64(r.bytes)/1e6, time.Since(started), float64(r.peak-min(r.peak, before.HeapAlloc))/1e6)

	if counts != want {
		t.Fatalf("counts %+v, want %+v", counts, want)
	}
	if len(added) != len(wantAdded) {
		t.Fatalf("%d members added, want %d", len(added), len(wantAdded))
	}
	for i, id := range added {
		if !wantAdded[id] || (i > 0 && added[i-1] == id) {
			t.Fatalf("member %d added wrongly (or twice)", id)
		}
	}
	if r.bytes < 30e6 {
		t.Fatalf("the list is only %d bytes", r.bytes)
	}
	if growth := int64(r.peak) - int64(before.HeapAlloc); growth > 16<<20 {
		t.Fatalf("heap grew by %d MB reading a %d MB list", growth>>20, r.bytes>>20)
	}
}

// TestImportBatches: 12,000 distinct keys are looked up with three
// queries (5,000, 5,000, 2,000).
func TestImportBatches(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, 10)
	var list strings.Builder
	for i := range 12_000 {
		fmt.Fprintf(&list, "%s\n", memberNo(i))
	}
	list.WriteString(memberNo(3) + "\n") // again, after its batch
	var n atomic.Int64
	ctx := database.CountStatements(t.Context(), &n)
	var added []int
	counts, err := listimport.Import(ctx, e.db, e.lookupPhone, listimport.KeyMemberNo, strings.NewReader(list.String()),
		func(id int) { added = append(added, id) })
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Errorf("%d queries, want 3", n.Load())
	}
	if counts != (listimport.Counts{Lines: 12_001, Matched: 11, Unmatched: 11_990}) {
		t.Errorf("counts %+v", counts)
	}
	slices.Sort(added)
	if !slices.Equal(added, ids) {
		t.Errorf("added %v, want %v", added, ids)
	}
}

func TestImportPhones(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, 5)
	bind := func(member int, phone, appID string, unbound bool) {
		t.Helper()
		c := e.db.Identity.Create().SetKind(entidentity.KindPHONE).SetAppID(appID).
			SetLookup(identity.LookupKey(e.protector, entidentity.KindPHONE, appID, phone)).
			SetMemberID(member).SetBoundAt(time.Now())
		if unbound {
			c.SetUnboundAt(time.Now())
		}
		if err := c.Exec(t.Context()); err != nil {
			t.Fatalf("binding %s: %v", phone, err)
		}
	}
	bind(ids[0], "13800000000", "", false)
	bind(ids[1], "13800000001", "", false)
	bind(ids[2], "13800000002", "", true)       // unbound
	bind(ids[3], "13800000003", "wxapp", false) // not a phone identity of the member
	bind(ids[4], "13800000004", "", false)      // merged into ids[1]
	e.exec(t, "UPDATE members SET status = 'MERGED', merged_into_id = $2 WHERE id = $1", ids[4], ids[1])

	list := "\xEF\xBB\xBF手机号,姓名,备注\r\n" +
		"+86 138-0000-0000,张三,\"vip, gold\"\r\n" +
		"\"13800000000\",again\r\n" +
		"\r\n" +
		"8613800000001\r\n" +
		"13800000002,unbound\r\n" +
		"13800000003\r\n" +
		"13800000004,merged\r\n" +
		"12345,too short\r\n" +
		",no phone\r\n" +
		"13900000000" // no line ending at the end
	counts, added := e.run(t, listimport.KeyPhone, strings.NewReader(list))
	want := listimport.Counts{Lines: 9, Matched: 4, Unmatched: 3, Invalid: 2}
	if counts != want {
		t.Errorf("counts %+v, want %+v", counts, want)
	}
	if !slices.Equal(added, []int{ids[0], ids[1]}) {
		t.Errorf("added %v, want %v", added, ids[:2])
	}

	// Without a header, the first line counts.
	counts, _ = e.run(t, listimport.KeyPhone, strings.NewReader("13800000000\n13800000001\n"))
	if counts != (listimport.Counts{Lines: 2, Matched: 2}) {
		t.Errorf("headerless counts %+v", counts)
	}
}

func TestImportHeadersAndLongLines(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, 3)
	long := strings.Repeat("A", 2<<20)
	exact := strings.Repeat("B", listimport.MaxLineBytes)
	list := "memberNo\n" + // a word: a header
		memberNo(0) + "\n" +
		long + "\r\n" +
		memberNo(1) + "\n" +
		exact + "\n" +
		memberNo(2) + "\n" +
		long // at the very end, no line ending
	counts, added := e.run(t, listimport.KeyMemberNo, strings.NewReader(list))
	if counts != (listimport.Counts{Lines: 6, Matched: 3, Invalid: 3}) {
		t.Errorf("counts %+v", counts)
	}
	if !slices.Equal(added, ids) {
		t.Errorf("added %v, want %v", added, ids)
	}
	// A first line that is a member number is no header.
	counts, _ = e.run(t, listimport.KeyMemberNo, strings.NewReader(memberNo(0)+"\n"+memberNo(9)))
	if counts != (listimport.Counts{Lines: 2, Matched: 1, Unmatched: 1}) {
		t.Errorf("headerless counts %+v", counts)
	}
	counts, _ = e.run(t, listimport.KeyMemberNo, strings.NewReader(""))
	if counts != (listimport.Counts{}) {
		t.Errorf("empty list counts %+v", counts)
	}
}

func TestImportRefusals(t *testing.T) {
	e := newEnv(t)
	_, err := listimport.Import(t.Context(), e.db, e.lookupPhone, "EMAIL", strings.NewReader("x"), func(int) {})
	if fault.CodeOf(err) != fault.BadUserInput {
		t.Errorf("unknown key: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = listimport.Import(ctx, e.db, e.lookupPhone, listimport.KeyMemberNo, strings.NewReader("T000001\n"), func(int) {})
	if err == nil {
		t.Error("a cancelled import went on")
	}
	_, err = listimport.Import(t.Context(), e.db, e.lookupPhone, listimport.KeyMemberNo, failing{}, func(int) {})
	if err == nil || !strings.Contains(err.Error(), "upload cut") {
		t.Errorf("read error: %v", err)
	}
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, fmt.Errorf("upload cut") }
