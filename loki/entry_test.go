package loki

import (
	"testing"
	"unsafe"
)

// The queue's memory bound counts Entry.Size: the overhead it adds to an
// entry's strings must cover the Entry value the queue keeps, or the bound
// would let the process keep more alive than it counts.
func TestEntryOverheadCoversTheEntry(t *testing.T) {
	if size := int(unsafe.Sizeof(Entry{})); entryOverhead < size+16 {
		t.Fatalf("entryOverhead %d does not cover an Entry of %d bytes and its line's allocation", entryOverhead, size)
	}
}
