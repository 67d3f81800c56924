package ircconn

import (
	"bytes"
	"testing"

	"github.com/ergochat/irc-go/ircmsg"
)

// FuzzChannelText checks the read loop's fast path against the full parser: a line it
// recognises as channel text without parsing must parse to the same sender, a text
// command and the same channel, or not parse at all (the full path drops those too),
// so no other kind of line is ever dropped unparsed.
func FuzzChannelText(f *testing.F) {
	for _, seed := range []string{
		":bob!b@h PRIVMSG #chan :hello",
		"@time=2026-01-01T00:00:00Z :bob!b@h NOTICE #chan :hi",
		":bob TAGMSG #chan",
		":bob!b@h PRIVMSG alice :direct",
		":server 001 alice :welcome",
		"PING :x",
		":bob!b@h  PRIVMSG  &local  :spaces",
		":bob!b@h PRIVMSG #a,#b :two targets",
		"@ :bob PRIVMSG #c :empty tags",
	} {
		f.Add([]byte(seed), "#&")
	}
	f.Fuzz(func(t *testing.T, raw []byte, chantypes string) {
		nick, channel, ok := channelText(raw, chantypes)
		if !ok {
			return
		}
		if bytes.ContainsAny(raw, "\r\n\x00") {
			return // the reader splits lines before this point: such bytes never reach it
		}
		msg, err := ircmsg.ParseLine(string(raw))
		if err != nil {
			return // malformed: the full path ignores it as well
		}
		if msg.Nick() != string(nick) {
			t.Fatalf("%q: fast path nick %q, parser %q", raw, nick, msg.Nick())
		}
		if msg.Command != "PRIVMSG" && msg.Command != "NOTICE" && msg.Command != "TAGMSG" {
			t.Fatalf("%q: fast path took command %q for text", raw, msg.Command)
		}
		if len(msg.Params) == 0 || msg.Params[0] != string(channel) {
			t.Fatalf("%q: fast path channel %q, parser params %q", raw, channel, msg.Params)
		}
	})
}

// FuzzMayBeNick checks the cheap own-nick test never says no where a casemapping the
// connection knows says the nicks are equal (a false no would drop the bridge's own
// line, or take someone's line for its own; a false yes only costs the full path).
func FuzzMayBeNick(f *testing.F) {
	for _, seed := range [][2]string{{"Alice", "alice"}, {"a[b]", "A{B}"}, {"x^", "X~"}, {"é", "É"}, {"bob", "bobby"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, nick, own string) {
		if mayBeNick([]byte(nick), own) {
			return
		}
		for _, mapping := range []string{"rfc1459", "rfc1459-strict", "ascii", "rfc7613"} {
			a, errA := casefold(mapping, nick)
			b, errB := casefold(mapping, own)
			if errA == nil && errB == nil && a == b {
				t.Fatalf("mayBeNick(%q, %q) = false, but they are equal under %s", nick, own, mapping)
			}
		}
	})
}
