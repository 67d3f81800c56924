package bridge

import (
	"fmt"
	"testing"
)

func TestBoundedSet(t *testing.T) {
	var s boundedSet
	s.Add("a")
	if !s.Take("a") || s.Take("a") {
		t.Fatal("a key is taken exactly once")
	}
	for i := 0; i <= boundedSetSize; i++ {
		s.Add(fmt.Sprint(i))
	}
	if s.Take("0") {
		t.Fatal("the oldest key was not forgotten past the size")
	}
	if !s.Take(fmt.Sprint(boundedSetSize)) {
		t.Fatal("the newest key was forgotten")
	}
}
