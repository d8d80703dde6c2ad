package identity

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/onemember/onemember/internal/platform/obs"
)

// The development sender must put the code where a developer (and the
// README's instructions) can find it: attribute otp, with the masked phone.
func TestLogSenderWritesCodeAndMaskedPhone(t *testing.T) {
	var buf bytes.Buffer
	s := LogSender{Log: obs.NewLogger(&buf, "json", "info")}
	if err := s.SendOTP(context.Background(), "13812345678", "424242", "LOGIN"); err != nil {
		t.Fatal(err)
	}
	line := buf.String()
	for _, want := range []string{`"otp":"424242"`, `"phone":"138****5678"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line %s lacks %s", line, want)
		}
	}
	if strings.Contains(line, "13812345678") {
		t.Error("log line has the phone in clear")
	}
}

func TestMemberNumberHasCheckDigit(t *testing.T) {
	no := MemberNumber(21474836480 + 41)
	if no != "10000041"+string(no[8]) || len(no) != 9 {
		t.Fatalf("member number %q", no)
	}
	// Luhn: any single changed digit is caught.
	for i := 0; i < 8; i++ {
		b := []byte(no)
		b[i] = '0' + (b[i]-'0'+1)%10
		if luhn(string(b[:8])) == int(b[8]-'0') {
			t.Fatalf("changed digit %d not caught: %s", i, b)
		}
	}
}
