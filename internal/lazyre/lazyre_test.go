package lazyre

import (
	"sync"
	"testing"
)

func TestMatchesLikeRegexp(t *testing.T) {
	re := New(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	for s, want := range map[string]bool{"a": true, "app-1": true, "-a": false, "A": false, "": false} {
		if got := re.MatchString(s); got != want {
			t.Errorf("MatchString(%q) = %v, want %v", s, got, want)
		}
	}
	sub := New(`^(\w+)=(\d+)$`)
	if m := sub.FindStringSubmatch("port=80"); len(m) != 3 || m[1] != "port" || m[2] != "80" {
		t.Errorf("FindStringSubmatch = %q", m)
	}
	if sub.String() != `^(\w+)=(\d+)$` {
		t.Errorf("String() = %q", sub.String())
	}
}

// TestConcurrentFirstUse compiles once however many goroutines match first.
func TestConcurrentFirstUse(t *testing.T) {
	re := New(`^x+$`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !re.MatchString("xxx") {
				t.Error("no match")
			}
		}()
	}
	wg.Wait()
}

func TestInvalidPanicsAtFirstUse(t *testing.T) {
	re := New(`(`) // no panic here
	defer func() {
		if recover() == nil {
			t.Error("an invalid expression did not panic at its first use")
		}
	}()
	re.MatchString("x")
}
