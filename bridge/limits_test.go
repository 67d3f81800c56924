package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/passerelle/passerelle/bridge/config"
)

func TestDMRoomLimitsPerSenderAndLogin(t *testing.T) {
	l := newCreationLimits(config.LimitsConfig{DMRoomsPerSender: 2, DMRoomsPerLogin: 3})
	for i := range 2 {
		if ok, _ := l.allowDMRoom("irc", "alice", "mallory"); !ok {
			t.Fatalf("room %d from one sender refused within the limit", i+1)
		}
	}
	ok, tell := l.allowDMRoom("irc", "alice", "mallory")
	if ok || !tell {
		t.Fatalf("third room from one sender: ok=%v tell=%v, want refused and told", ok, tell)
	}
	if ok, tell = l.allowDMRoom("irc", "alice", "mallory"); ok || tell {
		t.Fatalf("fourth room from one sender: ok=%v tell=%v, want refused silently", ok, tell)
	}
	// The refused tries did not use up the login's budget: one more sender fits.
	if ok, _ = l.allowDMRoom("irc", "alice", "bob"); !ok {
		t.Fatal("a second sender was refused although the login has room left")
	}
	if ok, _ = l.allowDMRoom("irc", "alice", "carol"); ok {
		t.Fatal("the login's limit of 3 let a fourth room through")
	}
	// Other logins have their own budgets.
	if ok, _ = l.allowDMRoom("irc", "dave", "mallory"); !ok {
		t.Fatal("another login was refused by alice's limits")
	}
}

func TestUnlimitedWhenZero(t *testing.T) {
	l := newCreationLimits(config.LimitsConfig{})
	for i := range 1000 {
		if ok, _ := l.allowDMRoom("irc", "alice", fmt.Sprint(i)); !ok || !l.allowLookup("irc") {
			t.Fatalf("refused at %d with no limits set", i)
		}
	}
	if err := l.waitGhost(context.Background(), "chat"); err != nil {
		t.Fatal(err)
	}
}

func TestGhostBudgetWaitsAndLookupsRefuse(t *testing.T) {
	l := newCreationLimits(config.LimitsConfig{GhostsPerChat: 2, GhostLookups: 1})
	ctx := context.Background()
	for range 2 {
		if err := l.waitGhost(ctx, "remote:irc:#flood"); err != nil {
			t.Fatal(err)
		}
	}
	// The third new user of the chat waits for the budget (half an hour here): with a
	// context ending sooner, the limiter says at once that it would have to wait.
	soon, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := l.waitGhost(soon, "remote:irc:#flood"); err == nil {
		t.Fatal("a chat past its budget of new users did not wait")
	}
	if err := l.waitGhost(soon, "remote:irc:#quiet"); err != nil {
		t.Fatalf("another chat waited for #flood's budget: %v", err)
	}
	if !l.allowLookup("irc") || l.allowLookup("irc") {
		t.Fatal("lookups: want the first allowed and the second refused")
	}
}

func TestKeyedLimiterStaysBounded(t *testing.T) {
	l := newKeyedLimiter(1)
	now := time.Now()
	for i := range maxLimiterKeys * 3 {
		l.get(fmt.Sprint(i)).AllowN(now, 1)
	}
	if n := len(l.buckets); n > maxLimiterKeys {
		t.Fatalf("%d buckets kept, want at most %d", n, maxLimiterKeys)
	}
}

func TestSanitizeName(t *testing.T) {
	for in, want := range map[string]string{
		"bob":                       "bob",
		"eve\nboss: cancelled":      `eve boss: cancelled`,
		"[click](https://evil.tld)": `\[click\]\(https://evil\.tld\)`,
		"a\u2028b\x00c":             "a b c",
	} {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
	if got := []rune(sanitizeName(string(make([]byte, 500)))); len(got) != maxNoticeName+1 {
		t.Errorf("a long name kept %d runes, want %d", len(got), maxNoticeName+1)
	}
}
