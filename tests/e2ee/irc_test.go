package e2ee

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/tests/harness"
)

// ircGhost is the Matrix ID of an IRC nick's ghost on cryptnet.
func ircGhost(nick string) id.UserID {
	return id.NewUserID("irc_"+id.EncodeUserLocalpart("cryptnet."+strings.ToLower(nick)), harness.DefaultDomain)
}

// ircTest is one run of the IRC test: the bridge, an IRC user in the channels and a
// Matrix user with her independent E2EE client.
type ircTest struct {
	t      *testing.T
	ctx    context.Context
	run    *bridgeRun
	irc    *harness.IRCClient
	user   *harness.User
	fay    *harness.E2EEClient
	puppet string // fay's nick on IRC
}

// fromIRC waits for an IRC line to reach room from the IRC user's ghost, encrypted.
func (it *ircTest) fromIRC(room id.RoomID, target, line string) harness.E2EEMessage {
	it.t.Helper()
	if err := it.irc.Privmsg(target, line); err != nil {
		it.t.Fatal(err)
	}
	m, err := it.fay.WaitMessage(it.ctx, room, harness.E2EEText(ircGhost(it.irc.Nick), line))
	if err != nil {
		it.t.Fatal(err)
	}
	if !m.Encrypted {
		it.t.Fatalf("%q reached the encrypted room in clear text", line)
	}
	return m
}

// toIRC sends content from fay's client and waits for the IRC line it becomes.
func (it *ircTest) toIRC(room id.RoomID, content map[string]any, match func(ircmsg.Message) bool) (id.EventID, ircmsg.Message) {
	it.t.Helper()
	evtID, encrypted, err := it.fay.SendMessage(it.ctx, room, content)
	if err != nil {
		it.t.Fatal(err)
	}
	if !encrypted {
		it.t.Fatal("the client sent into the room in clear text")
	}
	line, err := it.irc.Wait(it.ctx, func(m ircmsg.Message) bool { return m.Nick() == it.puppet && match(m) })
	if err != nil {
		it.t.Fatalf("after sending %v: %v", content, err)
	}
	return evtID, line
}

// says matches a PRIVMSG to target with exactly text.
func says(target, text string) func(ircmsg.Message) bool {
	return func(m ircmsg.Message) bool {
		return m.Command == "PRIVMSG" && len(m.Params) == 2 && m.Params[0] == target && m.Params[1] == text
	}
}

// TestEncryptedIRC: an encrypted room plumbed to a channel of a real IRC server, and an
// encrypted channel portal. Messages, edits, replies, reactions, redactions and files
// cross; IRC sees clear text, the homeserver only ciphertext; a restart and a crash
// keep the keys.
func TestEncryptedIRC(t *testing.T) {
	for _, dbType := range []string{"sqlite", "postgres"} {
		t.Run(dbType, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			suffix := dbType[:2]
			run := startBridge(t, ctx, dbType, connectors("http://127.0.0.1:1"),
				map[string]any{"encryption": map[string]any{"default": true}})
			ivan, err := harness.DialIRC(ctx, ngircd.Addr, "ivan_"+suffix)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(ivan.Close)
			user, fay := newE2EEUser(t, ctx, "fay")
			it := &ircTest{t: t, ctx: ctx, run: run, irc: ivan, user: user, fay: fay, puppet: user.UserID.Localpart() + "[m]"}
			plumbed := "#vault_" + suffix
			if err = ivan.Join(ctx, plumbed); err != nil {
				t.Fatal(err)
			}
			room := it.plumb(plumbed)
			it.messages(room, plumbed)
			it.files(room, plumbed)
			it.portal("#open_" + suffix)

			// The keys live in the database: after a clean restart and after a crash,
			// both directions still work in the same room, with the same sessions.
			for _, kill := range []bool{false, true} {
				run.restart(kill)
				it.fromIRC(room, plumbed, fmt.Sprintf("after the restart (killed: %v)", kill))
				it.toIRC(room, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("back again (killed: %v)", kill)},
					says(plumbed, fmt.Sprintf("back again (killed: %v)", kill)))
			}
			assertServerHoldsCiphertext(t, ctx, user, room, 5)
		})
	}
}

// plumb links a new encrypted room of fay's to channel.
func (it *ircTest) plumb(channel string) id.RoomID {
	it.t.Helper()
	// Named, so the bot does not take it for a second DM (a management room).
	room, err := it.fay.CreateRoom(it.ctx, harness.E2EERoom{Name: "Fay's vault", Invite: []id.UserID{bot()}})
	if err != nil {
		it.t.Fatal(err)
	}
	waitBotIn(it.t, it.ctx, it.fay, room, "plumb")
	if _, err = it.fay.SendText(it.ctx, room, "!pass plumb irc cryptnet "+channel); err != nil {
		it.t.Fatal(err)
	}
	waitBotIn(it.t, it.ctx, it.fay, room, "now linked")
	return room
}

// messages: text, edit, reply, reaction and redaction from the encrypted room reach IRC
// as clear lines; IRC lines reach the room encrypted.
func (it *ircTest) messages(room id.RoomID, channel string) {
	it.t.Helper()
	first, _ := it.toIRC(room, map[string]any{"msgtype": "m.text", "body": "hello irc, encrypted"}, says(channel, "hello irc, encrypted"))
	it.toIRC(room, map[string]any{"msgtype": "m.text", "body": "* hello irc, corrected",
		"m.new_content": map[string]any{"msgtype": "m.text", "body": "hello irc, corrected"},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": first}},
		says(channel, "* hello irc, corrected"))
	fromIvan := it.fromIRC(room, channel, "hi fay, from irc")
	it.toIRC(room, map[string]any{"msgtype": "m.text", "body": "got it",
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": fromIvan.EventID}}},
		func(m ircmsg.Message) bool {
			return m.Command == "PRIVMSG" && m.Params[0] == channel && strings.Contains(m.Params[1], it.irc.Nick) && strings.HasSuffix(m.Params[1], "got it")
		})
	if _, err := it.fay.SendEvent(it.ctx, room, event.EventReaction, map[string]any{
		"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": fromIvan.EventID, "key": "👍"}}); err != nil {
		it.t.Fatal(err)
	}
	if _, err := it.irc.Wait(it.ctx, func(m ircmsg.Message) bool {
		return m.Nick() == it.puppet && m.Command == "PRIVMSG" && strings.Contains(m.Params[1], "reacted 👍") && strings.HasSuffix(m.Params[1], "to "+it.irc.Nick+"\x01")
	}); err != nil {
		it.t.Fatal(err)
	}
	redaction, err := it.fay.Redact(it.ctx, room, first)
	if err != nil {
		it.t.Fatal(err)
	}
	// Dendrite v0.15.2 never pushes redactions to appservices (element-hq/dendrite#3445):
	// hand it over as a homeserver would.
	if err = harness.PushTransaction(it.ctx, shared.Port, shared.Reg.ServerToken, "redact-"+redaction.String(),
		map[string]any{"events": []any{harness.RedactionEvent(it.user.UserID, room, redaction, first)}}); err != nil {
		it.t.Fatal(err)
	}
	if _, err = it.irc.Wait(it.ctx, func(m ircmsg.Message) bool {
		return m.Command == "NOTICE" && m.Params[0] == channel && strings.Contains(m.Params[1], it.puppet+" deleted a message")
	}); err != nil {
		it.t.Fatal(err)
	}
}

// linkRe finds the bridge's file link in an IRC line.
var linkRe = regexp.MustCompile(`http://\S+`)

// files: an encrypted attachment from the room reaches IRC as a link the bridge serves
// decrypted.
func (it *ircTest) files(room id.RoomID, channel string) {
	it.t.Helper()
	letter := []byte("a private letter for the channel")
	attach := attachment.NewEncryptedFile()
	up, err := it.user.Client.UploadBytes(it.ctx, attach.Encrypt(letter), "application/octet-stream")
	if err != nil {
		it.t.Fatal(err)
	}
	_, line := it.toIRC(room, map[string]any{"msgtype": "m.file", "body": "letter.txt",
		"info": map[string]any{"mimetype": "text/plain", "size": len(letter)},
		"file": &event.EncryptedFileInfo{EncryptedFile: *attach, URL: up.ContentURI.CUString()}},
		func(m ircmsg.Message) bool {
			return m.Command == "PRIVMSG" && m.Params[0] == channel && linkRe.MatchString(m.Params[1])
		})
	link := linkRe.FindString(line.Params[1])
	req, err := http.NewRequestWithContext(it.ctx, http.MethodGet, link, nil)
	if err != nil {
		it.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		it.t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(got) != string(letter) {
		it.t.Fatalf("the file link %s served %d %q (%v), want the decrypted letter", link, resp.StatusCode, got, err)
	}
}

// portal: a channel portal opened by alias is encrypted from the start; both
// directions work in it.
func (it *ircTest) portal(channel string) {
	it.t.Helper()
	if err := it.irc.Join(it.ctx, channel); err != nil {
		it.t.Fatal(err)
	}
	room, err := it.fay.Join(it.ctx, "#irc_cryptnet_"+channel+":"+harness.DefaultDomain)
	if err != nil {
		it.t.Fatal(err)
	}
	if encrypted, err := it.fay.WaitRoom(it.ctx, room); err != nil || !encrypted {
		it.t.Fatalf("the channel portal is not encrypted (%v)", err)
	}
	it.fromIRC(room, channel, "hello in the encrypted portal")
	it.toIRC(room, map[string]any{"msgtype": "m.text", "body": "answer from the portal"}, says(channel, "answer from the portal"))
	assertServerHoldsCiphertext(it.t, it.ctx, it.user, room, 1)
}
