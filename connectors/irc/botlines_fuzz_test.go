package irc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircmsg"

	"github.com/passerelle/passerelle/bridge"
)

// FuzzBotLines feeds arbitrary server lines, a few at a time, to the bot connection's
// line handler (what an IRC server, or anyone it relays, can send): it never panics,
// and every event it hands the core is in a chat of its network, from a user of it.
func FuzzBotLines(f *testing.F) {
	for _, seed := range []string{
		":passbot!b@h JOIN #c\n:irc.test 353 passbot = #c :@passbot @+Op voiced\n:irc.test 366 passbot #c :End",
		"@msgid=abc;time=2026-01-02T03:04:05.000Z;account=opacct :Op!o@h PRIVMSG #c :\x02hi\x02 voiced",
		":Op!o@h PRIVMSG #c :\x01ACTION waves\x01\n:Op!o@h PRIVMSG passbot :private",
		":Op!o@h MODE #c +v-o voiced Op\n:Op!o@h TOPIC #c :new topic\n:irc.test 332 passbot #c :topic",
		":Newbie!n@h JOIN #c newbieacct :Newbie Real\n:Newbie!n@h NICK Newer\n:Newer!n@h PART #c :bye",
		":irc.test BATCH +s1 netsplit hub.net leaf.net\n@batch=s1 :carol!c@h QUIT :*.net *.split\n:irc.test BATCH -s1",
		":Op!o@h KICK #c voiced :out\n:voiced!v@h AWAY :gone\n:alice!a@h QUIT :hub.net leaf.net",
		":irc.test 005 passbot CASEMAPPING=rfc1459 PREFIX=(qaohv)~&@%+ :are supported",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, lines string) {
		n, host := testNetwork(t, time.Hour)
		ctx := context.Background()
		for i, raw := range strings.Split(lines, "\n") {
			if i == 20 {
				break
			}
			msg, err := ircmsg.ParseLine(raw)
			if err != nil {
				continue
			}
			n.handleBotLine(ctx, msg)
			for _, evt := range host.snapshot() {
				checkNetworkEvent(t, raw, evt)
			}
			host.reset()
		}
	})
}

// checkNetworkEvent fails when an event from network "net" names a chat or a user
// outside it.
func checkNetworkEvent(t *testing.T, raw string, evt *bridge.RemoteEvent) {
	t.Helper()
	chat, err := parseChatID(evt.Chat.ChatID)
	if err != nil || chat.network != "net" || evt.Chat.Connector != connectorName {
		t.Fatalf("%q: event %s in chat %+v (%v)", raw, evt.Type, evt.Chat, err)
	}
	users := []bridge.RemoteUserID{evt.Sender.RemoteID, evt.TargetUser}
	if evt.ChatInfo != nil {
		for _, m := range evt.ChatInfo.Members {
			users = append(users, m.RemoteID)
		}
	}
	for _, u := range users {
		if u == "" {
			continue
		}
		if network, _, ok := splitRemoteUser(u); !ok || network != "net" {
			t.Fatalf("%q: event %s names user %q", raw, evt.Type, u)
		}
	}
}
