package outputbuf

import "testing"

func TestKeepsTheTail(t *testing.T) {
	tests := []struct {
		max    int
		writes []string
		want   string
	}{
		{0, []string{"abc", "def"}, "abcdef"},
		{4, []string{"abc", "def"}, "cdef"},
		{4, []string{"abcdefgh"}, "efgh"},
	}
	for _, tt := range tests {
		b := &Buffer{Max: tt.max}
		for _, w := range tt.writes {
			if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", w, n, err)
			}
		}
		if got := b.String(); got != tt.want {
			t.Errorf("max %d, writes %q: %q, want %q", tt.max, tt.writes, got, tt.want)
		}
	}
}
