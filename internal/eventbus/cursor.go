package eventbus

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/onemember/onemember/internal/platform/fault"
)

// ErrBadCursor answers a cursor this API did not write.
var ErrBadCursor = fault.Invalidf("after", "is not a cursor of this API")

// StartAfter is where memberID's subscription starts: after the event of
// the cursor, or FromNow without one. A cursor of another member (one
// since merged into memberID) is ErrEventsExpired: its stream ended, and
// the app reloads its state.
func StartAfter(memberID int, cursor *string) (int64, error) {
	if cursor == nil {
		return FromNow, nil
	}
	m, seq, err := DecodeCursor(*cursor)
	if err != nil {
		return 0, err
	}
	if m != memberID {
		return 0, ErrEventsExpired
	}
	return seq, nil
}

// EncodeCursor is the opaque resume point of a member's event: the member
// and the event's seq. Clients pass it back as memberEvents(after:).
func EncodeCursor(memberID int, seq int64) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "e1:%d:%d", memberID, seq))
}

// DecodeCursor reverses EncodeCursor.
func DecodeCursor(c string) (memberID int, seq int64, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, 0, ErrBadCursor
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != "e1" {
		return 0, 0, ErrBadCursor
	}
	memberID, err = strconv.Atoi(parts[1])
	if err != nil || memberID <= 0 {
		return 0, 0, ErrBadCursor
	}
	seq, err = strconv.ParseInt(parts[2], 10, 64)
	if err != nil || seq < 0 {
		return 0, 0, ErrBadCursor
	}
	return memberID, seq, nil
}
