package scenario

import (
	"strings"
	"testing"
)

func TestSummaryCheck(t *testing.T) {
	const good = `level=info msg="shut down" added=1 delivered=90 dropped=7 droppedNoSpill=0 droppedSpillError=3 droppedSpillFull=4 droppedUnreadable=0 filteredLines=2 lambdaDropped=5 lost=0 reason=spindown recovered=6 recoveredLost=0 rejected=1 spilled=40 took=77ms truncated=0 unconfirmed=2 written=95`
	tests := []struct {
		name          string
		line          string
		wrote, inLoki int
		want          string // in the error; "" for none
	}{
		{"adds up", good, 100, 91, ""},
		{"a line unaccounted for", strings.Replace(good, "delivered=90", "delivered=89", 1), 100, 89, "= 102, but"},
		{"reasons that do not add up", strings.Replace(good, "droppedSpillFull=4", "droppedSpillFull=3", 1), 100, 91, "reasons"},
		{"lines the listener never saw", good, 101, 91, "the function wrote 101"},
		{"Loki holds fewer than delivered", good, 100, 80, "Loki holds 80"},
		{"Loki holds more than delivered and unconfirmed", good, 100, 93, "Loki holds 93"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseSummary("level=info msg=registered\n" + tt.line + "\n")
			if err != nil {
				t.Fatal(err)
			}
			err = s.Check(tt.wrote, tt.inLoki)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Check: %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := ParseSummary("level=info msg=registered\n"); err == nil {
		t.Fatal("a summary parsed where there is none")
	}
}
