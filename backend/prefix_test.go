package backend

import "testing"

func TestPrefixEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix, end string
		ok          bool
	}{
		{"", "", false},
		{"a", "b", true},
		{"order-", "order.", true},
		{"a\xff", "b", true},
		{"a\xff\xff", "b", true},
		{"\xff\xff", "", false},
		{"ab\xfe", "ab\xff", true},
	}
	for _, tt := range tests {
		end, ok := PrefixEnd(tt.prefix)
		if end != tt.end || ok != tt.ok {
			t.Errorf("PrefixEnd(%q) = %q, %v; want %q, %v", tt.prefix, end, ok, tt.end, tt.ok)
		}
	}
}
