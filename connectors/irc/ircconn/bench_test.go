package ircconn

import (
	"bufio"
	"context"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// autoServer is a minimal scripted server for benchmarks: it registers
// every client (no caps), answers PING, discards everything else and closes
// on QUIT. Each connection costs it one goroutine and a small bufio.Reader.
func autoServer(tb testing.TB) (addr string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			go serveAuto(nc)
		}
	}()
	return ln.Addr().String()
}

func serveAuto(nc net.Conn) {
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 512)
	nick := "x"
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		cmd, rest, _ := strings.Cut(line, " ")
		switch cmd {
		case "CAP":
			if strings.HasPrefix(rest, "LS") {
				nc.Write([]byte(":srv CAP * LS :\r\n"))
			}
		case "NICK":
			nick = rest
		case "USER":
			nc.Write([]byte(":srv 001 " + nick + " :Welcome\r\n:srv 005 " + nick + " CASEMAPPING=rfc1459 :are supported\r\n:srv 422 " + nick + " :No MOTD\r\n"))
		case "PING":
			nc.Write([]byte("PONG " + rest + "\r\n"))
		case "QUIT":
			return
		}
	}
}

// BenchmarkSendThroughput measures Send with flood control off, to a server
// that discards the lines.
func BenchmarkSendThroughput(b *testing.B) {
	addr := autoServer(b)
	connected := make(chan struct{})
	c := New(Config{Addr: addr, Nick: "bench", MessagesPerSecond: -1, Log: zerolog.Nop()}, func(ctx context.Context, ev Event) {
		if ev.Kind == Connected {
			close(connected)
		}
	})
	c.Start(context.Background())
	defer c.Stop("done")
	<-connected
	ctx := context.Background()
	text := strings.Repeat("hello world ", 20)
	b.ReportAllocs()
	b.SetBytes(int64(len("PRIVMSG #bench :" + text + "\r\n")))
	for b.Loop() {
		if err := c.Send(ctx, "PRIVMSG", "#bench", text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConnMemory opens n idle, registered connections and reports the
// memory they hold. The scripted server runs in the same process, so its
// cost per connection is measured first with raw clients (no Conn) and
// subtracted: bytes/conn is the Conn's own heap plus goroutine stacks.
// ns/op is the time to open, register and stop both sets of connections.
func BenchmarkConnMemory(b *testing.B) {
	const n = 200
	for b.Loop() {
		addr := autoServer(b)
		base := memInUse()

		// Phase 1: raw clients register and idle; measures the server side.
		raw := make([]net.Conn, 0, n)
		for i := range n {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			nick := "raw" + strconv.Itoa(i)
			nc.Write([]byte("CAP LS 302\r\nNICK " + nick + "\r\nUSER u 0 * :r\r\nCAP END\r\n"))
			br := bufio.NewReader(nc)
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if strings.Contains(l, " 422 ") {
					break
				}
			}
			raw = append(raw, nc)
		}
		serverSide := memInUse() - base
		for _, nc := range raw {
			nc.Close()
		}

		// Phase 2: n Conns.
		base = memInUse()
		var wg sync.WaitGroup
		wg.Add(n)
		conns := make([]*Conn, n)
		for i := range conns {
			var once sync.Once
			conns[i] = New(Config{Addr: addr, Nick: "user" + strconv.Itoa(i), Log: zerolog.Nop()}, func(ctx context.Context, ev Event) {
				if ev.Kind == Connected {
					once.Do(wg.Done)
				}
			})
			conns[i].Start(context.Background())
		}
		wg.Wait()
		total := memInUse() - base
		b.ReportMetric(float64(total)/n, "total-bytes/conn")
		b.ReportMetric(float64(serverSide)/n, "server-bytes/conn")
		b.ReportMetric(float64(total-serverSide)/n, "bytes/conn")
		var stopWG sync.WaitGroup
		for _, c := range conns {
			stopWG.Add(1)
			go func() { defer stopWG.Done(); c.Stop("bye") }()
		}
		stopWG.Wait()
	}
}

// memInUse returns live heap plus goroutine stack memory after a GC.
func memInUse() int64 {
	runtime.GC()
	runtime.GC()

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse)
}
