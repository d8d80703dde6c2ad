package pii

import (
	"errors"
	"testing"
)

func TestNormalizePhone(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "13812341234", want: "13812341234"},
		{in: "19912341234", want: "19912341234"},
		{in: "138 1234 1234", want: "13812341234"},
		{in: "138-1234-1234", want: "13812341234"},
		{in: " 138 - 1234 - 1234 ", want: "13812341234"},
		{in: "+8613812341234", want: "13812341234"},
		{in: "+86 138 1234 1234", want: "13812341234"},
		{in: "+86-138-1234-1234", want: "13812341234"},
		{in: "008613812341234", want: "13812341234"},
		{in: "0086 138 1234 1234", want: "13812341234"},
		{in: "8613812341234", want: "13812341234"},
		{in: "86 138 1234 1234", want: "13812341234"},

		{in: "", wantErr: true},
		{in: "+86", wantErr: true},
		{in: "12812341234", wantErr: true},     // second digit 2
		{in: "10012341234", wantErr: true},     // second digit 0
		{in: "23812341234", wantErr: true},     // does not start with 1
		{in: "1381234123", wantErr: true},      // 10 digits
		{in: "138123412345", wantErr: true},    // 12 digits
		{in: "+85213812341234", wantErr: true}, // Hong Kong prefix
		{in: "+1 13812341234", wantErr: true},
		{in: "861381234123", wantErr: true}, // 86 + 10 digits
		{in: "+86+8613812341234", wantErr: true},
		{in: "0861381234123", wantErr: true},
		{in: "1381234123a", wantErr: true},
		{in: "138.1234.1234", wantErr: true},
		{in: "(138)12341234", wantErr: true},
		{in: "１３８１２３４１２３４", wantErr: true},       // full-width digits
		{in: "1381234\u00a01234", wantErr: true}, // no-break space is not a separator
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizePhone(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidPhone) {
					t.Fatalf("NormalizePhone(%q) = %q, %v; want ErrInvalidPhone", tt.in, got, err)
				}
				if got != "" {
					t.Errorf("NormalizePhone(%q) returned %q alongside an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizePhone(%q) error = %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("NormalizePhone(%q) = %q; want %q", tt.in, got, tt.want)
			}
		})
	}
}
