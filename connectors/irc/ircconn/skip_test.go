package ircconn

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestChannelText(t *testing.T) {
	cases := []struct {
		line, chantypes string
		nick, channel   string
		ok              bool
	}{
		{":ann!a@host PRIVMSG #chan :hello", "#&", "ann", "#chan", true},
		{"@time=2026-12-04T12:00:00Z;msgid=x :ann!a@host PRIVMSG #chan :hi", "#&", "ann", "#chan", true},
		{":ann!a@host NOTICE &local :note", "#&", "ann", "&local", true},
		{":ann TAGMSG #chan", "#", "ann", "#chan", true},
		{":ann@host PRIVMSG #chan :no user part", "#", "ann", "#chan", true},
		{":ann!a@host PRIVMSG me :private", "#&", "", "", false},
		{":ann!a@host PRIVMSG @#chan :to the ops (STATUSMSG)", "#&", "", "", false},
		{":ann!a@host PRIVMSG :#chan", "#", "", "", false},
		{":ann!a@host PRIVMSG # :too short", "#", "", "", false},
		{":ann!a@host privmsg #chan :lower case takes the full path", "#", "", "", false},
		{":ann!a@host JOIN #chan", "#", "", "", false},
		{":srv 001 me :Welcome", "#", "", "", false},
		{"PING :token", "#", "", "", false},
		{"PRIVMSG #chan :no source", "#", "", "", false},
		{"@only-tags", "#", "", "", false},
		{":!a@host PRIVMSG #chan :empty nick", "#", "", "", false},
		{":ann!a@host PRIVMSG #chan :no channels on this server", "", "", "", false},
		{"", "#", "", "", false},
	}
	for _, c := range cases {
		nick, channel, ok := channelText([]byte(c.line), c.chantypes)
		if ok != c.ok || (ok && (string(nick) != c.nick || string(channel) != c.channel)) {
			t.Errorf("channelText(%q) = %q, %q, %v; want %q, %q, %v", c.line, nick, channel, ok, c.nick, c.channel, c.ok)
		}
	}
}

func TestMayBeNick(t *testing.T) {
	cases := []struct {
		nick, own string
		want      bool
	}{
		{"alice", "alice", true},
		{"Alice", "alice", true},
		{"al[ce", "al{ce", true}, // RFC 1459
		{"al^ce", "al~ce", true},
		{"bob", "alice", false},
		{"alicf", "alice", false},
		{"alice_", "alice", false},
		{"ålice", "alice", true}, // rfc7613: the full comparison decides
		{"alice", "Ålice", true},
	}
	for _, c := range cases {
		if got := mayBeNick([]byte(c.nick), c.own); got != c.want {
			t.Errorf("mayBeNick(%q, %q) = %v, want %v", c.nick, c.own, got, c.want)
		}
	}
}

// TestSkipChannelText: with SkipChannelText the connection drops others' text to the
// channels it is asked about, and still delivers its own echoes, private messages,
// channel events and the channels it is not asked to skip.
func TestSkipChannelText(t *testing.T) {
	srv := newTestServer(t)
	var asked []string
	var mu sync.Mutex
	_, evs := newTestConn(t, Config{Addr: srv.addr(), Nick: "me", SkipChannelText: func(channel []byte) bool {
		mu.Lock()
		asked = append(asked, string(channel))
		mu.Unlock()
		return string(channel) != "#mine"
	}}, nil)
	p := srv.accept()
	p.handshake("me")
	evs.waitFor(t, Connected)
	p.send(":ann!a@h PRIVMSG #chan :others' text, skipped",
		"@msgid=1 :ann!a@h NOTICE #chan :skipped too",
		":ann!a@h TAGMSG #chan",
		":Me!m@h PRIVMSG #chan :own echo",
		":ann!a@h PRIVMSG me :private",
		":ann!a@h PRIVMSG #mine :a channel not skipped",
		":ann!a@h JOIN #chan",
		":srv PONG srv :end")
	var got []string
	for {
		ev := evs.waitFor(t, Message)
		if ev.Msg.Command == "PONG" {
			break
		}
		got = append(got, ev.Msg.Command+" "+ev.Msg.Nick()+" "+strings.Join(ev.Msg.Params, " "))
	}
	want := []string{"PRIVMSG Me #chan own echo", "PRIVMSG ann me private", "PRIVMSG ann #mine a channel not skipped", "JOIN ann #chan"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("delivered %q, want %q", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(asked, ",") != "#chan,#chan,#chan,#mine" {
		t.Errorf("asked about %q", asked)
	}
}

// BenchmarkChannelLineFanout is the cost, per connection, of a channel line that other
// connections bridge (every puppet in a channel receives each of its lines): conns
// registered connections each read b.N such lines, skipped before parsing or, for
// comparison, delivered as Message events to a handler that drops them (the path
// before skipping). ns/op is wall time per line for all connections together; cpu-ns/
// line/conn is the process's CPU time (the scripted server's writes included) per line
// and connection.
//
//	go test -run x -bench ChannelLineFanout ./connectors/irc/ircconn/
func BenchmarkChannelLineFanout(b *testing.B) {
	for _, conns := range []int{1, 200} {
		for _, skip := range []bool{true} {
			name := map[bool]string{true: "skipped", false: "parsed"}[skip] + "/conns=" + strconv.Itoa(conns)
			b.Run(name, func(b *testing.B) { benchFanout(b, conns, skip) })
		}
	}
}

func benchFanout(b *testing.B, conns int, skip bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, conns)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				// Register the client, then hand the connection to the benchmark.
				r := bufio.NewReader(nc)
				nick := ""
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
					switch cmd {
					case "NICK":
						nick = rest
					case "USER":
						nc.Write([]byte(":srv CAP * LS :\r\n:srv 001 " + nick + " :Welcome\r\n:srv 005 " + nick + " CHANTYPES=# :are supported\r\n:srv 422 " + nick + " :No MOTD\r\n"))
						accepted <- nc
						return
					}
				}
			}()
		}
	}()
	var skipFn func([]byte) bool
	if skip {
		skipFn = func([]byte) bool { return true }
	}
	done := make(chan struct{}, conns)
	var clients []*Conn
	for i := 0; i < conns; i++ {
		c := New(Config{Addr: ln.Addr().String(), Nick: "p" + strconv.Itoa(i), SkipChannelText: skipFn, MessagesPerSecond: -1, Log: zerolog.Nop()},
			func(_ context.Context, ev Event) {
				// What a puppet does with others' channel text: look and drop it. The
				// private line at the end marks that every line was read.
				if ev.Kind == Message && ev.Msg.Command == "PRIVMSG" && !strings.HasPrefix(ev.Msg.Params[0], "#") {
					done <- struct{}{}
				}
			})
		c.Start(context.Background())
		clients = append(clients, c)
	}
	defer func() {
		for _, c := range clients {
			c.Stop("done")
		}
	}()
	servers := make([]net.Conn, 0, conns)
	for len(servers) < conns {
		select {
		case nc := <-accepted:
			servers = append(servers, nc)
		case <-time.After(time.Minute):
			b.Fatal("clients did not register")
		}
	}
	line := "@time=2026-12-04T12:00:00.000Z;msgid=abcdefghijkl :someone!user@host.example PRIVMSG #busy :a line of ordinary length in a busy channel, bridged by the bot\r\n"
	const chunk = 256
	block := []byte(strings.Repeat(line, chunk))
	before := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for _, nc := range servers {
		wg.Add(1)
		go func(nc net.Conn) {
			defer wg.Done()
			for sent := 0; sent < b.N; sent += chunk {
				n := min(chunk, b.N-sent)
				nc.Write(block[:n*len(line)])
			}
			nc.Write([]byte(":someone!user@host.example PRIVMSG p :end\r\n"))
		}(nc)
	}
	wg.Wait()
	for i := 0; i < conns; i++ {
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatal("not every connection read every line")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-before)/float64(b.N)/float64(conns), "cpu-ns/line/conn")
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
