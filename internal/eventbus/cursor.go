package eventbus

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// errBadCursor is a cursor this API did not write.
var errBadCursor = errors.New("eventbus: malformed cursor")

// EncodeCursor is the opaque resume point of a member's event: the member
// and the event's seq. Clients pass it back as memberEvents(after:).
func EncodeCursor(memberID int, seq int64) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "e1:%d:%d", memberID, seq))
}

// DecodeCursor reverses EncodeCursor.
func DecodeCursor(c string) (memberID int, seq int64, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, 0, errBadCursor
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 3 || parts[0] != "e1" {
		return 0, 0, errBadCursor
	}
	memberID, err = strconv.Atoi(parts[1])
	if err != nil || memberID <= 0 {
		return 0, 0, errBadCursor
	}
	seq, err = strconv.ParseInt(parts[2], 10, 64)
	if err != nil || seq < 0 {
		return 0, 0, errBadCursor
	}
	return memberID, seq, nil
}
