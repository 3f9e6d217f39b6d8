package scenario

import (
	"errors"
	"fmt"
)

// Summary is the extension's shutdown summary: what it did with every line
// over its life.
type Summary struct {
	// Written is what the listener received, before the filter; Recovered
	// what an earlier process's spill held; Added the lines the extension
	// wrote itself (the SHUTDOWN reason).
	Written, Recovered, Added int
	// Where the lines went.
	Delivered, FilteredLines, Dropped, Rejected, Unconfirmed, Lost int
	// DroppedBy is Dropped by reason, by the summary's field names
	// (droppedNoSpill, droppedSpillFull, droppedSpillError,
	// droppedUnreadable).
	DroppedBy map[string]int
	// Spilled, LambdaDropped (records Lambda never delivered) and
	// RecoveredLost (lines an earlier process's spill lost) are outside
	// the sum.
	Spilled, LambdaDropped, RecoveredLost int
}

// DropReasons are the summary's names of Dropped's parts.
var DropReasons = []string{"droppedNoSpill", "droppedSpillFull", "droppedSpillError", "droppedUnreadable"}

// ParseSummary reads the shutdown summary from the extension's output.
func ParseSummary(output string) (Summary, error) {
	line := summaryLine(output)
	if line == "" {
		return Summary{}, errors.New("the extension wrote no shutdown summary")
	}
	s := Summary{DroppedBy: map[string]int{}}
	for name, dst := range map[string]*int{
		"written": &s.Written, "recovered": &s.Recovered, "added": &s.Added,
		"delivered": &s.Delivered, "filteredLines": &s.FilteredLines, "dropped": &s.Dropped,
		"rejected": &s.Rejected, "unconfirmed": &s.Unconfirmed, "lost": &s.Lost,
		"spilled": &s.Spilled, "lambdaDropped": &s.LambdaDropped, "recoveredLost": &s.RecoveredLost,
	} {
		*dst = field(line, name)
	}
	for _, name := range DropReasons {
		s.DroppedBy[name] = field(line, name)
	}
	return s, nil
}

// Check holds the summary to the invariant
//
//	written + recovered + added = delivered + filteredLines + dropped
//	                              + rejected + unconfirmed + lost
//
// with dropped the sum of its reasons, and to what happened outside the
// extension: the function wrote wrote lines (none filtered away before
// the listener but those Lambda dropped), and Loki holds inLoki of them,
// which must be the lines delivered (up to the unconfirmed ones, of which
// Loki keeps the valid).
func (s Summary) Check(wrote, inLoki int) error {
	var errs []error
	in := s.Written + s.Recovered + s.Added
	out := s.Delivered + s.FilteredLines + s.Dropped + s.Rejected + s.Unconfirmed + s.Lost
	if in != out {
		errs = append(errs, fmt.Errorf("written %d + recovered %d + added %d = %d, but delivered %d + filtered %d + dropped %d + rejected %d + unconfirmed %d + lost %d = %d",
			s.Written, s.Recovered, s.Added, in, s.Delivered, s.FilteredLines, s.Dropped, s.Rejected, s.Unconfirmed, s.Lost, out))
	}
	sum := 0
	for _, n := range s.DroppedBy {
		sum += n
	}
	if sum != s.Dropped {
		errs = append(errs, fmt.Errorf("dropped %d, but its reasons %v add up to %d", s.Dropped, s.DroppedBy, sum))
	}
	if s.Written+s.LambdaDropped != wrote {
		errs = append(errs, fmt.Errorf("the function wrote %d lines; the extension received %d and Lambda dropped %d", wrote, s.Written, s.LambdaDropped))
	}
	if inLoki < s.Delivered || inLoki > s.Delivered+s.Unconfirmed {
		errs = append(errs, fmt.Errorf("Loki holds %d lines; the extension delivered %d (%d unconfirmed)", inLoki, s.Delivered, s.Unconfirmed))
	}
	return errors.Join(errs...)
}
