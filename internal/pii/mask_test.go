package pii

import "testing"

func TestMaskPhone(t *testing.T) {
	tests := []struct{ in, want string }{
		{"13812341234", "138****1234"},
		{"19900001111", "199****1111"},
		{"", ""},
		{"1381234", "****"},
		{"12345678", "123****5678"},
	}
	for _, tt := range tests {
		if got := MaskPhone(tt.in); got != tt.want {
			t.Errorf("MaskPhone(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"张三", "张*"},
		{"欧阳娜娜", "欧***"},
		{"李小龙", "李**"},
		{"王", "*"},
		{"", ""},
		{"Alice", "A****"},
		{"阿卜杜·热合曼", "阿******"},
	}
	for _, tt := range tests {
		if got := MaskName(tt.in); got != tt.want {
			t.Errorf("MaskName(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskEmail(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@example.com", "a****@example.com"},
		{"a@example.com", "a****@example.com"},
		{"张三@例子.中国", "张****@例子.中国"},
		{"odd@name@example.com", "o****@example.com"},
		{"", ""},
		{"no-at-sign", "****"},
		{"@example.com", "****"},
	}
	for _, tt := range tests {
		if got := MaskEmail(tt.in); got != tt.want {
			t.Errorf("MaskEmail(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestMaskIdentifier(t *testing.T) {
	tests := []struct{ in, want string }{
		{"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "oUp****6o"},
		{"12345678", "123****78"},
		{"会员卡号一二三四五", "会员卡****四五"},
		{"1234567", "****"},
		{"ab", "****"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := MaskIdentifier(tt.in); got != tt.want {
			t.Errorf("MaskIdentifier(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
