// Package listimport owns reading an uploaded list of members (人群导入):
// one phone number or member number a line, as plain text or CSV, turned
// into the live members it names. It streams: however long the list, it
// holds one line and one batch of keys at a time (plus the set of members
// found), and looks the keys up a batch at a time.
package listimport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Key is what each line of a list holds.
type Key string

// Keys.
const (
	// KeyPhone is a mainland China mobile number, in any form
	// pii.NormalizePhone reads (+86, spaces, dashes).
	KeyPhone Key = "PHONE"
	// KeyMemberNo is a member number (会员号): 1 to 32 characters of
	// A-Z, a-z, 0-9 and '-'.
	KeyMemberNo Key = "MEMBER_NO"
)

const (
	// BatchSize is how many distinct keys one lookup query takes.
	BatchSize = 5000
	// MaxLineBytes bounds a line; a longer one is counted invalid and
	// skipped without being held.
	MaxLineBytes = 1 << 20
	// maxMemberNoLen bounds a member number.
	maxMemberNoLen = 32
	// maxMergeHops bounds following merged_into links (chains are short).
	maxMergeHops = 16
	// readBuffer is the reader's buffer; longer lines are assembled up to
	// MaxLineBytes.
	readBuffer = 64 << 10
	// checkEvery is how many lines pass between checks of ctx.
	checkEvery = 4096
)

// ErrUnknownKey is a key kind other than PHONE and MEMBER_NO.
var ErrUnknownKey = fault.Invalidf("key", "must be PHONE or MEMBER_NO")

// Counts sums up a list: Lines = Matched + Unmatched + Invalid. Blank
// lines and a header line are not counted.
type Counts struct {
	// Lines is every line that held something.
	Lines int64
	// Matched are lines with a valid key that names a live member (a key
	// repeated counts each time).
	Matched int64
	// Unmatched are lines with a valid key that names no live member.
	Unmatched int64
	// Invalid are lines that are no valid key (or longer than
	// MaxLineBytes).
	Invalid int64
}

// Import reads r line by line and calls add once for each distinct live
// member the list names.
//
//   - A line is plain text or CSV: the key is its first column (a quoted
//     CSV field is unquoted), surrounding spaces trimmed; other columns are
//     ignored. A UTF-8 byte order mark at the start is dropped. Lines
//     holding nothing but spaces and separators are skipped.
//   - The first line that holds something is a header, skipped and not
//     counted, when its first column is no valid key, or for member
//     numbers holds no digit ("memberNo").
//   - Phones are normalized (pii.NormalizePhone) and found through the
//     members' bound phone identities, lookupPhone giving the blind index
//     of a normalized phone (identity.LookupKey with kind PHONE and no app
//     id); member numbers are matched exactly.
//   - Live members are ACTIVE or FROZEN; a merged member stands for the
//     member it was merged into; erased members are not found.
//   - Keys are looked up BatchSize distinct keys at a time, one query per
//     batch.
func Import(ctx context.Context, db *ent.Client, lookupPhone func(normalized string) []byte, key Key, r io.Reader, add func(memberID int)) (Counts, error) {
	im := &importer{db: db, key: key, lookupPhone: lookupPhone, add: add,
		batch: make(map[string]int64, BatchSize), seen: map[int]bool{}}
	switch {
	case key != KeyPhone && key != KeyMemberNo:
		return Counts{}, ErrUnknownKey
	case key == KeyPhone && lookupPhone == nil:
		return Counts{}, errors.New("importing phones needs lookupPhone")
	}
	lines := &lineReader{r: bufio.NewReaderSize(r, readBuffer)}
	header := true // the first line that holds something may be a header
	for n := 0; ; n++ {
		if n%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return Counts{}, err
			}
		}
		line, tooLong, err := lines.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Counts{}, fmt.Errorf("reading line %d: %w", n+1, err)
		}
		if n == 0 {
			line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
		}
		if tooLong {
			header = false
			im.counts.Lines++
			im.counts.Invalid++
			continue
		}
		if blank(line) {
			continue
		}
		field := firstColumn(line)
		k, ok := im.normalize(field)
		if header {
			header = false
			if !ok || (key == KeyMemberNo && !strings.ContainsAny(k, "0123456789")) {
				continue
			}
		}
		im.counts.Lines++
		if !ok {
			im.counts.Invalid++
			continue
		}
		im.batch[k]++
		if len(im.batch) >= BatchSize {
			if err := im.flush(ctx); err != nil {
				return Counts{}, err
			}
		}
	}
	if err := im.flush(ctx); err != nil {
		return Counts{}, err
	}
	return im.counts, nil
}

type importer struct {
	db          *ent.Client
	key         Key
	lookupPhone func(string) []byte
	add         func(int)

	counts Counts
	// batch counts the lines of each distinct key not looked up yet
	// (normalized phones or member numbers).
	batch map[string]int64
	// seen are the members add was called for.
	seen map[int]bool
}

// normalize returns the key a field holds, false when it holds none.
func (im *importer) normalize(field string) (string, bool) {
	if im.key == KeyPhone {
		p, err := pii.NormalizePhone(field)
		return p, err == nil
	}
	return field, validMemberNo(field)
}

func validMemberNo(s string) bool {
	if s == "" || len(s) > maxMemberNoLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Lookups: the members the keys name, following merges to the survivor;
// only live survivors come back, one row per key.
const (
	chainTail = `
  UNION ALL
  SELECT c.key, m.id, m.status, m.merged_into_id, c.hops + 1
  FROM chain c JOIN members m ON m.id = c.merged_into_id
  WHERE c.status = 'MERGED' AND c.hops < $2
)
SELECT key, id FROM chain WHERE status IN ('ACTIVE', 'FROZEN')`

	byMemberNo = `WITH RECURSIVE chain (key, id, status, merged_into_id, hops) AS (
  SELECT m.member_no::text, m.id, m.status, m.merged_into_id, 0
  FROM members m WHERE m.member_no = ANY($1::text[])` + chainTail

	byPhone = `WITH RECURSIVE chain (key, id, status, merged_into_id, hops) AS (
  SELECT i.lookup, m.id, m.status, m.merged_into_id, 0
  FROM identities i JOIN members m ON m.id = i.member_id
  WHERE i.kind = 'PHONE' AND i.app_id = '' AND i.unbound_at IS NULL AND i.lookup = ANY($1::bytea[])` + chainTail
)

// flush looks the batch up with one query and counts its lines.
func (im *importer) flush(ctx context.Context) error {
	if len(im.batch) == 0 {
		return nil
	}
	found, err := im.lookup(ctx)
	if err != nil {
		return err
	}
	for k, n := range im.batch {
		id, ok := found[k]
		if !ok {
			im.counts.Unmatched += n
			continue
		}
		im.counts.Matched += n
		if !im.seen[id] {
			im.seen[id] = true
			im.add(id)
		}
	}
	clear(im.batch)
	return nil
}

// lookup maps the batch's keys to live member ids.
func (im *importer) lookup(ctx context.Context) (map[string]int, error) {
	var (
		query string
		arg   any
		// back turns a returned key into the batch's key.
		back map[string]string
	)
	if im.key == KeyPhone {
		lookups := make([][]byte, 0, len(im.batch))
		back = make(map[string]string, len(im.batch))
		for p := range im.batch {
			l := im.lookupPhone(p)
			lookups = append(lookups, l)
			back[string(l)] = p
		}
		query, arg = byPhone, pq.ByteaArray(lookups)
	} else {
		nos := make([]string, 0, len(im.batch))
		for no := range im.batch {
			nos = append(nos, no)
		}
		query, arg = byMemberNo, pq.Array(nos)
	}
	rows, err := im.db.QueryContext(ctx, query, arg, maxMergeHops)
	if err != nil {
		return nil, fmt.Errorf("looking up members: %w", err)
	}
	defer rows.Close()
	found := make(map[string]int, len(im.batch))
	for rows.Next() {
		var (
			k  []byte
			id int
		)
		if err := rows.Scan(&k, &id); err != nil {
			return nil, fmt.Errorf("reading members: %w", err)
		}
		key := string(k)
		if back != nil {
			key = back[key]
		}
		found[key] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading members: %w", err)
	}
	return found, nil
}

// lineReader reads lines of any length while holding at most
// MaxLineBytes of one.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
}

// next returns the next line without its line ending, valid until the
// following call; tooLong (and no content) for a line over MaxLineBytes,
// which is read through and dropped. io.EOF after the last line.
func (l *lineReader) next() (line []byte, tooLong bool, err error) {
	l.buf = l.buf[:0]
	read := 0
	for {
		chunk, err := l.r.ReadSlice('\n')
		read += len(chunk)
		if !tooLong {
			// +2: the line ending is not part of the line.
			if len(l.buf)+len(chunk) > MaxLineBytes+2 {
				tooLong = true
				l.buf = l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if read == 0 {
				return nil, false, io.EOF
			}
		case err != nil:
			return nil, false, err
		}
		break
	}
	if tooLong {
		return nil, true, nil
	}
	line = bytes.TrimSuffix(l.buf, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > MaxLineBytes {
		return nil, true, nil
	}
	return line, false, nil
}

// blank reports whether a line holds nothing but spaces and separators
// (spreadsheets export empty rows as ",,,").
func blank(line []byte) bool {
	return len(bytes.Trim(line, " \t,;\r")) == 0
}

// firstColumn returns the line's first field, trimmed: up to the first
// comma or tab, or, when it starts with a quote, the quoted CSV field
// ("" inside standing for ").
func firstColumn(line []byte) string {
	line = bytes.TrimLeft(line, " \t")
	if len(line) > 0 && line[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(line); i++ {
			if line[i] == '"' {
				if i+1 < len(line) && line[i+1] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			b.WriteByte(line[i])
		}
		return strings.TrimSpace(b.String())
	}
	if i := bytes.IndexAny(line, ",\t"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(string(line))
}
