// Command demo runs a whole local Passerelle stack on embedded defaults: a real
// Dendrite homeserver, a real IRC server (Debian's ngircd), the bridge (SQLite, with the
// IRC connector and the loopback test network), then shows messages crossing each way.
// Without -once it keeps running so you can log in with any Matrix client; lines typed
// on standard input are said on IRC by the demo IRC user.
//
//	bash scripts/demo.sh          # installs ngircd if needed, then: go run ./tests/demo
//	go run ./tests/demo -once     # show the crossings and exit
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
	"github.com/passerelle/passerelle/tests/harness"
)

func main() {
	once := flag.Bool("once", false, "show a message crossing each way, then exit")
	dir := flag.String("dir", "", "where to keep the demo's files (default: a temporary directory)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *once, *dir, os.Stdin, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run starts the stack, shows the crossing and, unless once, serves until ctx ends.
func run(ctx context.Context, once bool, dir string, in io.Reader, out io.Writer) error {
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	if dir == "" {
		tmp, err := os.MkdirTemp("", "passerelle-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	say("Building Dendrite and the bridge (the first run takes a few minutes)…")
	setupCtx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	bin, err := harness.BuildBridge(setupCtx, "passerelle_loopback")
	if err != nil {
		return err
	}
	network, err := loopnet.New()
	if err != nil {
		return err
	}
	defer network.Close()
	ircd, err := harness.StartIRCServer(setupCtx, "ngircd", filepath.Join(dir, "ngircd"))
	if err != nil {
		return err
	}
	defer ircd.Stop()
	ircUser, err := harness.DialIRC(setupCtx, ircd.Addr, "ircbob")
	if err != nil {
		return err
	}
	defer ircUser.Close()
	if err = ircUser.Join(setupCtx, "#demo"); err != nil {
		return err
	}
	port, err := harness.FreePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	params := harness.BridgeConfigParams{Port: port,
		DatabaseType: "sqlite", DatabaseURI: filepath.Join(dir, "passerelle.db"), LogLevel: "info",
		Connectors: map[string]any{
			"loopback": map[string]any{"network_url": network.URL},
			"irc": map[string]any{"networks": []map[string]any{
				{"name": "demo", "address": ircd.Addr, "bot_nick": "passbot"}}},
		}}
	stack, err := harness.StartStack(setupCtx, dir, bin, params)
	if err != nil {
		return err
	}
	hs := stack.HS
	defer hs.Stop()
	if err = stack.WriteConfig(cfgPath, params); err != nil {
		return err
	}
	regPath := stack.RegPath
	br, err := harness.StartBridge(setupCtx, bin, cfgPath, regPath, filepath.Join(dir, "bridge.log"))
	if err != nil {
		return err
	}
	defer br.Stop()
	user, err := hs.RegisterUser(setupCtx, "demo", false)
	if err != nil {
		return err
	}
	defer user.Close()
	alias := "#loopback_lobby:" + hs.Domain
	roomID, err := user.JoinAndWait(setupCtx, alias)
	if err != nil {
		return err
	}
	say("Joined %s (%s) as %s.", alias, roomID, user.UserID)

	network.Inject(loopnet.Event{Chat: "#lobby", Sender: "bob", SenderName: "Bob", Text: "Hello from the loopback network!"})
	bobGhost := id.NewUserID("loopback_bob", hs.Domain)
	if _, err = user.WaitEvent(setupCtx, roomID, harness.TextFrom(bobGhost, "Hello from the loopback network!")); err != nil {
		return err
	}
	say("network → Matrix: %s says %q in %s", bobGhost, "Hello from the loopback network!", roomID)
	// The demo user has no login yet: the bridge says so instead of dropping the message.
	if _, err = user.SendText(setupCtx, roomID, "Hello from Matrix!"); err != nil {
		return err
	}
	notice, err := user.WaitEvent(setupCtx, roomID, func(e *event.Event) bool {
		return e.Sender == id.NewUserID("passerelle", hs.Domain) && e.Content.AsMessage().MsgType == event.MsgNotice
	})
	if err != nil {
		return err
	}
	say("Matrix → network without a login: the bridge answers %q", notice.Content.AsMessage().Body)
	if err = loginDemoUser(setupCtx, user, network, hs.Domain); err != nil {
		return err
	}
	if _, err = user.SendText(setupCtx, roomID, "Hello again, now logged in!"); err != nil {
		return err
	}
	got, err := network.WaitEvent(setupCtx, "#lobby", func(e loopnet.Event) bool { return e.Text == "Hello again, now logged in!" })
	if err != nil {
		return err
	}
	say("Matrix → network: account %q says %q in #lobby", got.Sender, got.Text)

	ircAlias := "#irc_demo_#demo:" + hs.Domain
	ircRoom, err := user.JoinAndWait(setupCtx, ircAlias)
	if err != nil {
		return err
	}
	if err = ircUser.Privmsg("#demo", "Hello from IRC!"); err != nil {
		return err
	}
	ircGhost := id.NewUserID("irc_"+id.EncodeUserLocalpart("demo.ircbob"), hs.Domain)
	if _, err = user.WaitEvent(setupCtx, ircRoom, harness.TextFrom(ircGhost, "Hello from IRC!")); err != nil {
		return err
	}
	say("IRC → Matrix: ircbob's %q arrives in %s from %s", "Hello from IRC!", ircAlias, ircGhost)
	if _, err = user.SendText(setupCtx, ircRoom, "Hello IRC, from Matrix!"); err != nil {
		return err
	}
	if _, err = ircUser.Wait(setupCtx, harness.PrivmsgFrom("demo[m]", "#demo", "Hello IRC, from Matrix!")); err != nil {
		return err
	}
	say("Matrix → IRC: ircbob sees demo[m] say %q in #demo on %s", "Hello IRC, from Matrix!", ircd.Addr)
	if once {
		say("Demo complete.")
		return nil
	}
	say("\nThe stack is up. Log in with a Matrix client:\n  homeserver: %s\n  user:       %s\n  password:   %s\n  rooms:      %s (IRC), %s (loopback)\n"+
		"IRC clients can join #demo on %s. Lines you type here are said by ircbob in #demo. Ctrl-C stops everything.",
		hs.URL, user.UserID, harness.TestPassword, ircAlias, alias, ircd.Addr)
	go echoIRC(ctx, ircUser, out)
	lines := make(chan string)
	go func() {
		scanner := bufio.NewScanner(in)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line := <-lines:
			if strings.TrimSpace(line) != "" {
				if err := ircUser.Privmsg("#demo", line); err != nil {
					return err
				}
			}
		}
	}
}

// loginDemoUser logs the user in through the management room's QR flow, confirming the
// code on the network as a phone would.
func loginDemoUser(ctx context.Context, user *harness.User, network *loopnet.Server, domain string) error {
	bot := id.NewUserID("passerelle", domain)
	resp, err := user.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot}})
	if err != nil {
		return err
	}
	if _, err = user.WaitEvent(ctx, resp.RoomID, func(e *event.Event) bool { return e.Sender == bot }); err != nil {
		return err
	}
	if _, err = user.SendText(ctx, resp.RoomID, "login loopback"); err != nil {
		return err
	}
	if _, err = user.WaitEvent(ctx, resp.RoomID, func(e *event.Event) bool {
		return e.Sender == bot && e.Content.AsMessage().MsgType == event.MsgImage
	}); err != nil {
		return err
	}
	loginID, _, ok := network.PendingLogin()
	if !ok {
		return errors.New("the bridge started no login on the network")
	}
	network.ConfirmLogin(loginID, "demo-account")
	_, err = user.WaitEvent(ctx, resp.RoomID, func(e *event.Event) bool {
		return e.Sender == bot && strings.Contains(e.Content.AsMessage().Body, "Logged in")
	})
	return err
}

// echoIRC prints what the demo IRC user sees said in #demo.
func echoIRC(ctx context.Context, c *harness.IRCClient, out io.Writer) {
	seen := 0
	for ctx.Err() == nil {
		waitCtx, cancel := context.WithTimeout(ctx, time.Second)
		lines := c.Lines()
		for _, m := range lines[seen:] {
			if m.Command == "PRIVMSG" && len(m.Params) == 2 {
				fmt.Fprintf(out, "[IRC %s] <%s> %s\n", m.Params[0], m.Nick(), m.Params[1])
			}
		}
		seen = len(lines)
		<-waitCtx.Done()
		cancel()
	}
}
