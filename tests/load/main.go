// Command load starts the whole real stack on this machine (Dendrite, an IRC server,
// the passerelle binary with one IRC network), gives N Matrix users their own IRC
// puppet in one of -rooms portals and measures the bridge's memory per puppet, throughput and
// latency each way (with Matrix→Matrix and IRC→IRC baselines) and how long all
// puppets take to come back after the IRC server restarts.
//
//	go run ./tests/load -users 200
//	go run ./tests/load -users 2000 -rooms 20
//
// Everything listens on loopback, every wait is bounded, and the program stops by
// itself; it exits non-zero with the bridge log tail when something does not happen.
// See tests/load/README.md.
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
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ergochat/irc-go/ircmsg"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge/config"
	"github.com/passerelle/passerelle/tests/harness"
)

const (
	netName    = "loadnet"
	chanPrefix = "#load" // the portals are #load0 … #load<R-1>
	baseChan   = "#base"
	userPrefix = "lu"
	// connectsPerSecond is the bridge's connect rate for the whole bridge.
	connectsPerSecond = 100
)

type options struct {
	users       int
	messages    int
	server      string
	keep        bool
	workers     int
	concurrency int
	timeout     time.Duration
	probes      int
	rooms       int
	db          string
	profile     string
}

func main() {
	var o options
	flag.IntVar(&o.users, "users", 200, "Matrix users, each with its own IRC puppet")
	flag.IntVar(&o.messages, "messages", 500, "messages per direction (and per baseline)")
	flag.StringVar(&o.server, "server", "ngircd", "IRC server: ngircd or inspircd")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, databases)")
	flag.IntVar(&o.workers, "workers", 8, "concurrent registrations and joins")
	flag.IntVar(&o.concurrency, "concurrency", 8, "concurrent Matrix senders (the IRC sender is one raw client writing as fast as it can)")
	flag.DurationVar(&o.timeout, "timeout", 25*time.Minute, "bound on the whole run")
	flag.IntVar(&o.probes, "probes", 20, "sequential latency probes per path (each waits for the previous)")
	flag.IntVar(&o.rooms, "rooms", 1, "portals #load0…#load<R-1>; user i joins portal i mod R (keeps each Dendrite room small)")
	flag.StringVar(&o.db, "db", "sqlite", "the bridge's database: sqlite, or postgres (a fresh database on $PASSERELLE_TEST_POSTGRES, default the local server)")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of each bridged burst's first seconds into this directory (for go tool pprof)")
	flag.Parse()
	if o.db != "sqlite" && o.db != "postgres" {
		fmt.Fprintln(os.Stderr, "load: -db must be sqlite or postgres")
		os.Exit(2)
	}
	if o.users < 2 || o.messages < 1 || o.workers < 1 || o.concurrency < 1 || o.probes < 1 || o.rooms < 1 || o.rooms > o.users {
		fmt.Fprintln(os.Stderr, "load: need -users >= 2, -messages >= 1, -workers >= 1, -concurrency >= 1, -probes >= 1, 1 <= -rooms <= -users")
		os.Exit(2)
	}
	if o.server != "ngircd" && o.server != "inspircd" {
		fmt.Fprintln(os.Stderr, "load: -server must be ngircd or inspircd")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	r := &run{o: o, start: time.Now()}
	err := r.run(ctx)
	overall := ctx.Err() // before cancel: did the whole run time out or get interrupted?
	cancel()
	stop()
	if err != nil {
		why := ""
		switch {
		case errors.Is(overall, context.DeadlineExceeded):
			why = fmt.Sprintf(" (the -timeout of %s was reached)", o.timeout)
		case errors.Is(overall, context.Canceled):
			why = " (interrupted)"
		}
		fmt.Fprintf(os.Stderr, "\nload: FAILED after %s%s: %v\n", time.Since(r.start).Round(time.Second), why, err)
		if r.bridge != nil {
			fmt.Fprintf(os.Stderr, "--- bridge log tail (%s) ---\n%s\n", r.bridge.LogPath, r.bridge.LogTail(60))
		}
		if r.hs != nil {
			fmt.Fprintf(os.Stderr, "--- dendrite log tail (%s) ---\n%s\n", r.hs.LogPath, r.hs.LogTail(20))
		}
		if r.irc != nil && r.irc.Kind == "inspircd" {
			fmt.Fprintf(os.Stderr, "--- %s log tail ---\n%s\n", r.irc.Kind, r.irc.LogTail(20))
		}
	}
	r.cleanup(err != nil)
	if err != nil {
		os.Exit(1)
	}
}

// run is one load run: the stack and what was measured.
type run struct {
	o     options
	start time.Time
	runID string

	dir     string
	binDir  string
	irc     *harness.IRCServer
	hs      *harness.Homeserver
	bridge  *harness.Bridge
	clients []*harness.IRCClient
	// metricsURL is the bridge's /metrics; dropDB removes a PostgreSQL database.
	metricsURL string
	dropDB     func()

	observer *harness.User
	senders  []*mautrix.Client // index i is user i (0 is the observer's client)
	portals  []id.RoomID       // index k is #load<k>; user i is in portals[i % rooms]

	res results
}

// results holds everything printed in the table.
type results struct {
	regTime, joinTime, puppetTime time.Duration
	fallbackMessages              int
	rssBefore, rssAfter, hwmAfter int64 // kB
	puppets                       int
	rssAfterMsgs                  int64
	// anonBefore, anonAfter are RssAnon: the process's own memory, without the
	// pages of its executable (which a kernel may map as huge pages).
	anonBefore, anonAfter              int64
	m2i, i2m, m2m, i2i                 *measure
	m2iIdle, i2mIdle, m2mIdle, i2iIdle *measure
	reconnect                          time.Duration
	reconnectRSSPeak                   int64
	hwmBeforeRestart, hwmAfterRe       int64
	dendriteRSS, ircRSS                int64
}

// measure is one message run: M messages, send and receive times.
type measure struct {
	name      string
	sent      int
	received  int
	firstSend time.Time
	lastRecv  time.Time
	lat       []time.Duration // sorted
	// Bridged phases only: the bridge's CPU time over the phase, and its own share of
	// each message's latency as its /metrics histogram saw it.
	bridged bool
	cpu     time.Duration
	own     harness.Histogram
}

// cpuPerMsg is the bridge's CPU time per message received.
func (m *measure) cpuPerMsg() string {
	if !m.bridged || m.received == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", float64(m.cpu)/float64(time.Millisecond)/float64(m.received))
}

// ownPct is a percentile of the bridge's own share, from its histogram.
func (m *measure) ownPct(q float64) string {
	if !m.bridged || m.own.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", 1000*m.own.Quantile(q))
}

func (m *measure) rate() float64 {
	d := m.lastRecv.Sub(m.firstSend).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(m.received) / d
}

func (m *measure) pct(p float64) time.Duration {
	if len(m.lat) == 0 {
		return 0
	}
	i := int(p * float64(len(m.lat)-1))
	return m.lat[i]
}

func (r *run) logf(format string, args ...any) {
	fmt.Printf("[%7s] %s\n", time.Since(r.start).Round(100*time.Millisecond), fmt.Sprintf(format, args...))
}

func (r *run) cleanup(failed bool) {
	if r.observer != nil {
		r.observer.Close()
	}
	for _, c := range r.clients {
		c.Close()
	}
	if r.bridge != nil {
		r.bridge.Stop()
	}
	if r.hs != nil {
		r.hs.Stop()
	}
	if r.dropDB != nil {
		r.dropDB()
	}
	if r.irc != nil {
		r.irc.Stop()
	}
	if r.binDir != "" {
		os.RemoveAll(r.binDir)
	}
	if r.dir == "" {
		return
	}
	switch {
	case r.o.keep || failed:
		fmt.Printf("load: kept %s (logs, databases, results.txt)\n", r.dir)
	default:
		// Keep only the results table.
		entries, _ := os.ReadDir(r.dir)
		for _, e := range entries {
			if e.Name() != "results.txt" {
				os.RemoveAll(filepath.Join(r.dir, e.Name()))
			}
		}
		fmt.Printf("load: results kept in %s (run with -keep to keep the logs too)\n", filepath.Join(r.dir, "results.txt"))
	}
}

func (r *run) run(ctx context.Context) error {
	var err error
	o := r.o
	r.runID = strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	if r.dir, err = os.MkdirTemp("", "passerelle-load-"); err != nil {
		return err
	}
	r.logf("users=%d rooms=%d messages=%d server=%s db=%s dir=%s", o.users, o.rooms, o.messages, o.server, o.db, r.dir)

	// --- the stack ---
	if r.irc, err = harness.StartIRCServer(ctx, o.server, filepath.Join(r.dir, o.server)); err != nil {
		return fmt.Errorf("starting %s: %w", o.server, err)
	}
	r.logf("%s listening on %s", o.server, r.irc.Addr)
	bin, err := harness.BuildBridge(ctx)
	if err != nil {
		return err
	}
	r.binDir = filepath.Dir(bin)
	port, err := harness.FreePort()
	if err != nil {
		return err
	}
	mport, err := harness.FreePort()
	if err != nil {
		return err
	}
	r.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	dbURI := filepath.Join(r.dir, "passerelle.db")
	if o.db == "postgres" {
		if dbURI, r.dropDB, err = harness.NewPostgresDB(ctx); err != nil {
			return fmt.Errorf("creating the bridge's PostgreSQL database: %w", err)
		}
	}
	cfgPath := filepath.Join(r.dir, "config.yaml")
	params := harness.BridgeConfigParams{HomeserverURL: "http://127.0.0.1:1", HomeserverDomain: harness.DefaultDomain,
		Port: port, DatabaseType: o.db, DatabaseURI: dbURI, LogLevel: "info", MetricsListen: fmt.Sprintf("127.0.0.1:%d", mport),
		// The load is a flood by design: measured, not cut off as a flood would be.
		BridgeExtra: map[string]any{"max_chat_rate": 1e6},
		Connectors: map[string]any{"irc": map[string]any{
			"connects_per_second": connectsPerSecond,
			"networks": []map[string]any{{
				"name": netName, "address": r.irc.Addr, "bot_nick": "passbot",
				"messages_per_second": 1000, "burst": 1000,
				// The default (1000) would refuse puppets above it.
				"max_connections": o.users + 100,
			}},
		}}}
	if err = harness.WriteBridgeConfig(cfgPath, params); err != nil {
		return err
	}
	regPath := filepath.Join(r.dir, "registration.yaml")
	if err = harness.GenerateRegistration(ctx, bin, cfgPath, regPath); err != nil {
		return err
	}
	reg, err := appservice.LoadRegistration(regPath)
	if err != nil {
		return err
	}
	r.logf("starting Dendrite (first run builds it: several minutes)")
	if r.hs, err = harness.StartDendrite(ctx, filepath.Join(r.dir, "dendrite"), []string{regPath}); err != nil {
		return err
	}
	params.HomeserverURL = r.hs.URL
	if err = harness.WriteBridgeConfig(cfgPath, params); err != nil {
		return err
	}
	if err = config.SetTokens(cfgPath, reg.AppToken, reg.ServerToken); err != nil {
		return err
	}
	if r.bridge, err = harness.StartBridge(ctx, bin, cfgPath, regPath, filepath.Join(r.dir, "bridge.log")); err != nil {
		return err
	}
	r.logf("bridge pid %d ready (Dendrite %s)", r.bridge.Pid(), r.hs.URL)

	// Raw IRC clients: one in every bridged channel, two in an unbridged one for the
	// IRC→IRC baseline.
	ircMain, err := r.dialIRC(ctx, "loadirc", r.channels()...)
	if err != nil {
		return err
	}
	base1, err := r.dialIRC(ctx, "loadbase1", baseChan)
	if err != nil {
		return err
	}
	base2, err := r.dialIRC(ctx, "loadbase2", baseChan)
	if err != nil {
		return err
	}

	// Let the bot connect and the bridge settle before the "no puppet" reading.
	if err = r.waitBotIn(ctx, ircMain); err != nil {
		return err
	}
	if err = sleepCtx(ctx, 3*time.Second); err != nil {
		return err
	}
	if r.res.rssBefore, _, err = r.bridgeMem(); err != nil {
		return err
	}
	r.res.anonBefore = procAnon(r.bridge.Pid())
	r.logf("bridge RSS before puppets: %s (anonymous %s)", kb(r.res.rssBefore), kb(r.res.anonBefore))
	r.heapProfile(ctx, "heap-idle")

	// --- users ---
	if err = r.registerUsers(ctx); err != nil {
		return err
	}
	if err = r.joinPortals(ctx); err != nil {
		return err
	}
	if err = r.waitPuppets(ctx, ircMain); err != nil {
		return err
	}
	if err = sleepCtx(ctx, 3*time.Second); err != nil {
		return err
	}
	if r.res.rssAfter, r.res.hwmAfter, err = r.bridgeMem(); err != nil {
		return err
	}
	r.res.anonAfter = procAnon(r.bridge.Pid())
	r.logf("bridge RSS with %d puppets: %s (HWM %s, anonymous %s)", r.res.puppets, kb(r.res.rssAfter), kb(r.res.hwmAfter), kb(r.res.anonAfter))
	r.heapProfile(ctx, "heap-puppets")

	// --- baselines, then bridged traffic ---
	if r.res.i2i, r.res.i2iIdle, err = r.ircToIRC(ctx, base1, base2); err != nil {
		return err
	}
	if r.res.m2m, r.res.m2mIdle, err = r.matrixToMatrix(ctx); err != nil {
		return err
	}
	if r.res.m2i, r.res.m2iIdle, err = r.matrixToIRC(ctx, ircMain); err != nil {
		return err
	}
	if r.res.i2m, r.res.i2mIdle, err = r.ircToMatrix(ctx, ircMain); err != nil {
		return err
	}
	if r.res.rssAfterMsgs, _, err = r.bridgeMem(); err != nil {
		return err
	}
	r.res.dendriteRSS = pidRSS(pidByArg(r.hs.ConfigPath))
	r.res.ircRSS = pidRSS(pidByArg(filepath.Join(r.dir, o.server, o.server+".conf")))

	// --- reconnect ---
	if err = r.reconnect(ctx); err != nil {
		return err
	}

	table := r.table()
	fmt.Println()
	fmt.Print(table)
	if err := os.WriteFile(filepath.Join(r.dir, "results.txt"), []byte(table), 0o644); err != nil {
		return err
	}
	return nil
}

// dialIRC connects a raw IRC client and joins it to chans.
func (r *run) dialIRC(ctx context.Context, nick string, chans ...string) (*harness.IRCClient, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(len(chans))*time.Second)
	defer cancel()
	c, err := harness.DialIRC(cctx, r.irc.Addr, nick)
	if err != nil {
		return nil, fmt.Errorf("raw IRC client %s: %w", nick, err)
	}
	r.clients = append(r.clients, c)
	for _, ch := range chans {
		if err := c.Join(cctx, ch); err != nil {
			return nil, fmt.Errorf("raw IRC client %s joining %s: %w", nick, ch, err)
		}
	}
	return c, nil
}

// chanName is the IRC channel of portal k.
func chanName(k int) string { return chanPrefix + strconv.Itoa(k) }

// channels lists the bridged channels #load0 … #load<R-1>.
func (r *run) channels() []string {
	out := make([]string, r.o.rooms)
	for k := range out {
		out[k] = chanName(k)
	}
	return out
}

// roomOf is the index of user i's portal (round-robin).
func (r *run) roomOf(i int) int { return i % r.o.rooms }

// chanDesc names the bridged channels in log lines and errors.
func (r *run) chanDesc() string {
	if r.o.rooms == 1 {
		return chanName(0)
	}
	return fmt.Sprintf("%s…%s (%d channels)", chanName(0), chanName(r.o.rooms-1), r.o.rooms)
}

// waitBotIn waits until the bridge bot is connected (it answers WHOIS).
func (r *run) waitBotIn(ctx context.Context, c *harness.IRCClient) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		start := len(c.Lines())
		if err := c.Raw("WHOIS passbot"); err != nil {
			return err
		}
		lines, err := collectUntil(ctx, c, start, func(m ircmsg.Message) bool { return m.Command == "318" }, 10*time.Second)
		if err != nil {
			return fmt.Errorf("WHOIS passbot: %w", err)
		}
		for _, m := range lines {
			if m.Command == "311" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the bridge bot passbot did not connect to the IRC server within 60 s")
		}
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// collectUntil returns the lines received after index start up to and including the
// first one matching end, polling for at most timeout.
func collectUntil(ctx context.Context, c *harness.IRCClient, start int, end func(ircmsg.Message) bool, timeout time.Duration) ([]ircmsg.Message, error) {
	deadline := time.Now().Add(timeout)
	for {
		lines := c.Lines()
		if start > len(lines) {
			start = len(lines)
		}
		for i := start; i < len(lines); i++ {
			if end(lines[i]) {
				return lines[start : i+1], nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s: no answer within %s", c.Nick, timeout)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// names sends NAMES and returns the channel's nicks without prefixes. It drops the
// lines c recorded so far (Forget), so c must not be waited on concurrently: with
// thousands of puppets the JOIN lines and NAMES replies would otherwise pile up and be
// copied on every poll.
func names(ctx context.Context, c *harness.IRCClient, ch string) ([]string, error) {
	c.Forget()
	start := len(c.Lines())
	if err := c.Raw("NAMES %s", ch); err != nil {
		return nil, fmt.Errorf("sending NAMES: %w", err)
	}
	lines, err := collectUntil(ctx, c, start, func(m ircmsg.Message) bool {
		return m.Command == "366" && len(m.Params) > 1 && strings.EqualFold(m.Params[1], ch)
	}, 15*time.Second)
	if err != nil {
		return nil, fmt.Errorf("NAMES %s: %w", ch, err)
	}
	var out []string
	for _, m := range lines {
		if m.Command != "353" || len(m.Params) < 4 || !strings.EqualFold(m.Params[2], ch) {
			continue
		}
		for _, n := range strings.Fields(m.Params[3]) {
			out = append(out, strings.TrimLeft(n, "~&@%+"))
		}
	}
	return out, nil
}

// namesAll is names over every channel in chans, concatenated (puppetsIn counts
// distinct nicks).
func namesAll(ctx context.Context, c *harness.IRCClient, chans []string) ([]string, error) {
	var out []string
	for _, ch := range chans {
		n, err := names(ctx, c, ch)
		if err != nil {
			return nil, err
		}
		out = append(out, n...)
	}
	return out, nil
}

func localpart(i int) string  { return fmt.Sprintf("%s%05d", userPrefix, i) }
func puppetNick(i int) string { return localpart(i) + "[m]" }

// puppetsIn counts the bridge's puppets among nicks and lists the missing users.
func (r *run) puppetsIn(nicks []string) (count int, missing []int) {
	have := make(map[string]bool, len(nicks))
	for _, n := range nicks {
		have[strings.ToLower(n)] = true
	}
	for i := 0; i < r.o.users; i++ {
		if have[strings.ToLower(puppetNick(i))] {
			count++
		} else {
			missing = append(missing, i)
		}
	}
	return count, missing
}

// pool runs f(i) for i in [0,n) on workers goroutines; the first error stops it.
func pool(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// retry runs f up to 3 times, 1 s apart, each attempt bounded by timeout.
func retry(ctx context.Context, what string, timeout time.Duration, f func(ctx context.Context) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err = f(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		if sleepCtx(ctx, time.Second) != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("%s (3 attempts): %w", what, err)
	}
	return nil
}

func (r *run) registerUsers(ctx context.Context) error {
	n := r.o.users
	r.senders = make([]*mautrix.Client, n)
	t0 := time.Now()
	var done atomic.Int64
	err := pool(ctx, n, r.o.workers, func(ctx context.Context, i int) error {
		return retry(ctx, "registering "+localpart(i), 60*time.Second, func(ctx context.Context) error {
			u, err := r.hs.RegisterUser(ctx, localpart(i), false)
			if err != nil {
				return err
			}
			if i == 0 {
				r.observer = u // keeps its /sync recorder
			} else {
				u.Close() // plain client from now on: no N sync loops
			}
			r.senders[i] = u.Client
			if d := done.Add(1); d%500 == 0 {
				r.logf("registered %d/%d users", d, n)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("registering users on Dendrite: %w", err)
	}
	r.res.regTime = time.Since(t0)
	r.logf("registered %d users in %s (%d workers)", n, r.res.regTime.Round(time.Millisecond), r.o.workers)
	return nil
}

// joinPortals has every user join its portal: the observer (user 0) creates #load0
// through its alias, users 1…R-1 create #load1…#load<R-1> the same way, and then the
// others join by room ID, in user order so the rooms grow evenly.
func (r *run) joinPortals(ctx context.Context) error {
	n, rooms := r.o.users, r.o.rooms
	alias := func(k int) string { return "#irc_" + netName + "_" + chanName(k) + ":" + harness.DefaultDomain }
	t0 := time.Now()
	r.portals = make([]id.RoomID, rooms)
	jctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	room, err := r.observer.JoinAndWait(jctx, alias(0))
	cancel()
	if err != nil {
		return fmt.Errorf("observer joining the portal %s: %w", alias(0), err)
	}
	r.portals[0] = room
	var done atomic.Int64
	report := func() {
		if d := done.Add(1); d%500 == 0 {
			r.logf("%d/%d users joined the portals", d, n-1)
		}
	}
	// Users 1…R-1 open the other portals through their aliases.
	err = pool(ctx, rooms-1, r.o.workers, func(ctx context.Context, j int) error {
		k := j + 1
		cli := r.senders[k]
		return retry(ctx, fmt.Sprintf("%s joining %s", cli.UserID, alias(k)), 120*time.Second, func(ctx context.Context) error {
			resp, err := cli.JoinRoom(ctx, alias(k), nil)
			if err == nil {
				r.portals[k] = resp.RoomID
				report()
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("opening the portals: %w", err)
	}
	if rooms > 1 {
		r.logf("%d portals open after %s", rooms, time.Since(t0).Round(time.Millisecond))
	}
	err = pool(ctx, n-rooms, r.o.workers, func(ctx context.Context, j int) error {
		i := j + rooms
		cli, room := r.senders[i], r.portals[r.roomOf(i)]
		return retry(ctx, fmt.Sprintf("%s joining %s", cli.UserID, room), 120*time.Second, func(ctx context.Context) error {
			_, err := cli.JoinRoom(ctx, room.String(), nil)
			if err == nil {
				report()
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("joining the portals: %w", err)
	}
	r.res.joinTime = time.Since(t0)
	if rooms == 1 {
		r.logf("%d users joined the portal %s in %s", n, r.portals[0], r.res.joinTime.Round(time.Millisecond))
	} else {
		r.logf("%d users joined %d portals (~%d each) in %s", n, rooms, (n+rooms-1)/rooms, r.res.joinTime.Round(time.Millisecond))
	}
	return nil
}

// waitPuppets waits until every user's puppet is in one of the channels (distinct
// nicks over the NAMES of all of them). Joining the portal
// is meant to open the puppet; users still missing after a stall get to send one
// message, which certainly opens it.
func (r *run) waitPuppets(ctx context.Context, c *harness.IRCClient) error {
	n := r.o.users
	t0 := time.Now()
	limit := 120*time.Second + time.Duration(n)*100*time.Millisecond
	stall := 30 * time.Second
	last, lastChange := -1, time.Now()
	fallback := false
	for {
		nicks, err := namesAll(ctx, c, r.channels())
		if err != nil {
			return err
		}
		count, missing := r.puppetsIn(nicks)
		if count != last {
			r.logf("puppets in %s: %d/%d", r.chanDesc(), count, n)
			last, lastChange = count, time.Now()
		}
		if count == n {
			r.res.puppets = count
			r.res.puppetTime = time.Since(t0)
			return nil
		}
		if !fallback && time.Since(lastChange) > stall {
			fallback = true
			r.res.fallbackMessages = len(missing)
			r.logf("no progress for %s: %d users send one message each to open their puppet", stall, len(missing))
			err := pool(ctx, len(missing), r.o.concurrency, func(ctx context.Context, j int) error {
				i := missing[j]
				return retry(ctx, "fallback message from "+localpart(i), 60*time.Second, func(ctx context.Context) error {
					_, err := r.senders[i].SendText(ctx, r.portals[r.roomOf(i)], "hello from "+localpart(i))
					return err
				})
			})
			if err != nil {
				return err
			}
			lastChange = time.Now()
		}
		if time.Since(t0) > limit {
			show := missing
			if len(show) > 10 {
				show = show[:10]
			}
			var names []string
			for _, i := range show {
				names = append(names, puppetNick(i))
			}
			return fmt.Errorf("only %d of %d puppets are in %s after %s (fallback messages sent: %v); missing e.g. %s",
				count, n, r.chanDesc(), limit, fallback, strings.Join(names, " "))
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
}

// phaseTimeout bounds one message phase.
func (r *run) phaseTimeout() time.Duration {
	return 60*time.Second + time.Duration(r.o.messages)*100*time.Millisecond
}

// trackIRC records when each PRIVMSG to one of targets whose text starts with prefix
// first arrives at c, until want distinct ones arrived or ctx ends.
func trackIRC(ctx context.Context, c *harness.IRCClient, targets []string, prefix string, want int) (map[string]time.Time, error) {
	to := make(map[string]bool, len(targets))
	for _, t := range targets {
		to[strings.ToLower(t)] = true
	}
	seen := map[string]time.Time{}
	_, err := c.Wait(ctx, func(m ircmsg.Message) bool {
		if m.Command == "PRIVMSG" && len(m.Params) == 2 && to[strings.ToLower(m.Params[0])] && strings.HasPrefix(m.Params[1], prefix) {
			if _, ok := seen[m.Params[1]]; !ok {
				seen[m.Params[1]] = time.Now()
			}
		}
		return len(seen) >= want
	})
	return seen, err
}

// trackMatrix is trackIRC for the observer's /sync in room.
func trackMatrix(ctx context.Context, u *harness.User, room id.RoomID, prefix string, want int) (map[string]time.Time, error) {
	seen := map[string]time.Time{}
	_, err := u.WaitEvent(ctx, room, func(evt *event.Event) bool {
		if evt.Type == event.EventMessage {
			if msg, ok := evt.Content.Parsed.(*event.MessageEventContent); ok && strings.HasPrefix(msg.Body, prefix) {
				if _, ok := seen[msg.Body]; !ok {
					seen[msg.Body] = time.Now()
				}
			}
		}
		return len(seen) >= want
	})
	return seen, err
}

// exchange runs one measured phase: tracker waits for M bodies while send sends them
// (recording each send time), then latencies are matched by body.
func (r *run) exchange(ctx context.Context, name, prefix, dir string,
	track func(ctx context.Context, prefix string, want int) (map[string]time.Time, error),
	send func(ctx context.Context, bodies []string, sent []time.Time) error) (burst, probe *measure, err error) {
	probe, err = r.probe(ctx, name, "p"+prefix, dir, track, send)
	if err != nil {
		return nil, nil, err
	}
	m := r.o.messages
	bodies := make([]string, m)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("%s%d-%s", prefix, i, r.runID)
	}
	sent := make([]time.Time, m)
	ctx, cancel := context.WithTimeout(ctx, r.phaseTimeout())
	defer cancel()
	type tracked struct {
		seen map[string]time.Time
		err  error
	}
	got := make(chan tracked, 1)
	before, err := r.sample(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	go func() {
		seen, err := track(ctx, prefix, m)
		got <- tracked{seen, err}
	}()
	r.logf("%s: sending %d messages", name, m)
	profiled := r.profileBurst(ctx, prefix, dir)
	sendErr := send(ctx, bodies, sent)
	t := <-got
	if err := <-profiled; err != nil {
		r.logf("%s: no CPU profile: %v", name, err)
	}
	res := &measure{name: name, sent: m, received: len(t.seen)}
	if sendErr != nil {
		return nil, nil, fmt.Errorf("%s: sending: %w", name, sendErr)
	}
	if t.err != nil || len(t.seen) < m {
		return nil, nil, fmt.Errorf("%s: %d of %d messages arrived within %s: %v", name, len(t.seen), m, r.phaseTimeout(), t.err)
	}
	res.firstSend = sent[0]
	for i, b := range bodies {
		if sent[i].Before(res.firstSend) {
			res.firstSend = sent[i]
		}
		at := t.seen[b]
		if at.After(res.lastRecv) {
			res.lastRecv = at
		}
		res.lat = append(res.lat, at.Sub(sent[i]))
	}
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	if err = r.settle(ctx, res, dir, before); err != nil {
		return nil, nil, err
	}
	r.logf("%s: %d messages, %.1f msg/s, p50 %s, p99 %s; bridge CPU %s per message, its own share p50 %s, p99 %s", name, res.received, res.rate(),
		res.pct(0.5).Round(100*time.Microsecond), res.pct(0.99).Round(100*time.Microsecond), res.cpuPerMsg(), res.ownPct(0.5), res.ownPct(0.99))
	return res, probe, nil
}

// probe sends -probes messages one at a time, each only after the previous one
// arrived: the latency of an otherwise idle path.
func (r *run) probe(ctx context.Context, name, prefix, dir string,
	track func(ctx context.Context, prefix string, want int) (map[string]time.Time, error),
	send func(ctx context.Context, bodies []string, sent []time.Time) error) (*measure, error) {
	res := &measure{name: name}
	before, err := r.sample(ctx, dir)
	if err != nil {
		return nil, err
	}
	for i := 0; i < r.o.probes; i++ {
		body := fmt.Sprintf("%s%d-%s", prefix, i, r.runID)
		sent := make([]time.Time, 1)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := send(pctx, []string{body}, sent)
		var seen map[string]time.Time
		if err == nil {
			seen, err = track(pctx, body, 1)
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: latency probe %d: %w", name, i, err)
		}
		res.lat = append(res.lat, seen[body].Sub(sent[0]))
		res.received++
	}
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	if err = r.settle(ctx, res, dir, before); err != nil {
		return nil, err
	}
	r.logf("%s: %d sequential probes, p50 %s, p99 %s; bridge CPU %s per message, its own share p50 %s, p99 %s", name, res.received,
		res.pct(0.5).Round(100*time.Microsecond), res.pct(0.99).Round(100*time.Microsecond), res.cpuPerMsg(), res.ownPct(0.5), res.ownPct(0.99))
	return res, nil
}

// profileBurst takes a CPU profile of a bridged burst's first seconds when -profile
// is set; the channel gives its outcome once written.
func (r *run) profileBurst(ctx context.Context, prefix, dir string) <-chan error {
	done := make(chan error, 1)
	if r.o.profile == "" || dir == "" {
		done <- nil
		return done
	}
	path := filepath.Join(r.o.profile, fmt.Sprintf("%s%s.pprof", prefix, r.o.db))
	go func() {
		err := harness.CPUProfile(ctx, r.listenAddr(), 8, path)
		if err == nil {
			r.logf("CPU profile written to %s", path)
		}
		done <- err
	}()
	return done
}

// heapProfile writes a heap profile named name when -profile is set.
func (r *run) heapProfile(ctx context.Context, name string) {
	if r.o.profile == "" {
		return
	}
	path := filepath.Join(r.o.profile, fmt.Sprintf("%s-%s.pprof", name, r.o.db))
	if err := harness.HeapProfile(ctx, r.listenAddr(), path); err != nil {
		r.logf("no heap profile: %v", err)
		return
	}
	r.logf("heap profile written to %s", path)
}

// listenAddr is the bridge's diagnostics listener.
func (r *run) listenAddr() string {
	return strings.TrimSuffix(strings.TrimPrefix(r.metricsURL, "http://"), "/metrics")
}

// bridgeSample is the bridge's CPU time so far and its histogram of its own share of
// latency in one direction ("" for a baseline phase, which the bridge is not part of).
type bridgeSample struct {
	cpu time.Duration
	own harness.Histogram
}

func (r *run) sample(ctx context.Context, dir string) (bridgeSample, error) {
	var s bridgeSample
	if dir == "" {
		return s, nil
	}
	var err error
	if s.cpu, err = procCPU(r.bridge.Pid()); err != nil {
		return s, err
	}
	m, err := harness.ScrapeMetrics(ctx, r.metricsURL)
	if err != nil {
		return s, err
	}
	s.own = m.Histogram("passerelle_event_bridge_seconds", map[string]string{"direction": dir})
	return s, nil
}

// settle waits for the bridge to finish what the phase left (its last database
// writes after the last send), then charges the phase with what it used.
func (r *run) settle(ctx context.Context, res *measure, dir string, before bridgeSample) error {
	if dir == "" {
		return nil
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}
	after, err := r.sample(ctx, dir)
	if err != nil {
		return err
	}
	res.bridged = true
	res.cpu = after.cpu - before.cpu
	res.own = after.own.Minus(before.own)
	return nil
}

// procCPU reads a process's user and system CPU time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the bridge's CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces; the fields after it are plain.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	// utime and stime are fields 14 and 15 of the whole line, in clock ticks (USER_HZ,
	// 100 on Linux).
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// sendIRC writes the bodies to target from one raw client, as fast as it can.
func sendIRC(c *harness.IRCClient, target string) func(ctx context.Context, bodies []string, sent []time.Time) error {
	return func(ctx context.Context, bodies []string, sent []time.Time) error {
		for i, b := range bodies {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			sent[i] = time.Now()
			if err := c.Privmsg(target, b); err != nil {
				return err
			}
		}
		return nil
	}
}

// sendMatrix sends body i from senders[i % len(senders)] into that sender's room
// (rooms[i % len(senders)]) with a bounded pool.
func (r *run) sendMatrix(rooms []id.RoomID, senders []*mautrix.Client) func(ctx context.Context, bodies []string, sent []time.Time) error {
	return func(ctx context.Context, bodies []string, sent []time.Time) error {
		return pool(ctx, len(bodies), r.o.concurrency, func(ctx context.Context, i int) error {
			cli, room := senders[i%len(senders)], rooms[i%len(senders)]
			sent[i] = time.Now()
			sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if _, err := cli.SendText(sctx, room, bodies[i]); err != nil {
				return fmt.Errorf("%s sending: %w", cli.UserID, err)
			}
			return nil
		})
	}
}

func (r *run) ircToIRC(ctx context.Context, from, to *harness.IRCClient) (burst, probe *measure, err error) {
	return r.exchange(ctx, "IRC→IRC baseline", "i2i-", "",
		func(ctx context.Context, prefix string, want int) (map[string]time.Time, error) {
			return trackIRC(ctx, to, []string{baseChan}, prefix, want)
		}, sendIRC(from, baseChan))
}

func (r *run) matrixToMatrix(ctx context.Context) (burst, probe *measure, err error) {
	// A plain room, not bridged: the observer and up to -concurrency senders.
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := r.observer.CreateRoom(cctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "load baseline"})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the baseline room: %w", err)
	}
	k := min(r.o.concurrency, r.o.users-1)
	senders := r.senders[1 : k+1]
	rooms := make([]id.RoomID, len(senders))
	for j, s := range senders {
		rooms[j] = resp.RoomID
		if _, err := s.JoinRoom(cctx, resp.RoomID.String(), nil); err != nil {
			return nil, nil, fmt.Errorf("%s joining the baseline room: %w", s.UserID, err)
		}
	}
	return r.exchange(ctx, "Matrix→Matrix baseline", "m2m-", "",
		func(ctx context.Context, prefix string, want int) (map[string]time.Time, error) {
			return trackMatrix(ctx, r.observer, resp.RoomID, prefix, want)
		}, r.sendMatrix(rooms, senders))
}

// matrixToIRC: every user sends into its own portal (the probes all come from user 0
// in #load0); c is in every channel.
func (r *run) matrixToIRC(ctx context.Context, c *harness.IRCClient) (burst, probe *measure, err error) {
	rooms := make([]id.RoomID, len(r.senders))
	for i := range rooms {
		rooms[i] = r.portals[r.roomOf(i)]
	}
	return r.exchange(ctx, "Matrix→IRC bridged", "m2i-", "to_network",
		func(ctx context.Context, prefix string, want int) (map[string]time.Time, error) {
			return trackIRC(ctx, c, r.channels(), prefix, want)
		}, r.sendMatrix(rooms, r.senders))
}

// ircToMatrix: c writes to #load0, whose portal the observer is in.
func (r *run) ircToMatrix(ctx context.Context, c *harness.IRCClient) (burst, probe *measure, err error) {
	return r.exchange(ctx, "IRC→Matrix bridged", "i2m-", "to_matrix",
		func(ctx context.Context, prefix string, want int) (map[string]time.Time, error) {
			return trackMatrix(ctx, r.observer, r.portals[0], prefix, want)
		}, sendIRC(c, chanName(0)))
}

// reconnect restarts the IRC server and waits for every puppet to be back in its
// channel, sampling the bridge's RSS every 200 ms.
func (r *run) reconnect(ctx context.Context) error {
	n := r.o.users
	var err error
	if _, r.res.hwmBeforeRestart, err = r.bridgeMem(); err != nil {
		return err
	}
	var peak atomic.Int64
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, _, err := r.bridgeMem(); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	defer func() { stopSampling(); wg.Wait() }()

	r.logf("restarting %s", r.irc.Kind)
	t0 := time.Now()
	if err := r.irc.Restart(ctx); err != nil {
		return fmt.Errorf("restarting %s: %w", r.irc.Kind, err)
	}
	watch, err := r.dialIRC(ctx, "loadwatch", r.channels()...)
	if err != nil {
		return fmt.Errorf("after the restart: %w", err)
	}
	limit := 120*time.Second + time.Duration(n)*100*time.Millisecond
	last := -1
	for {
		nicks, err := namesAll(ctx, watch, r.channels())
		if err != nil {
			return fmt.Errorf("after the restart: %w", err)
		}
		count, _ := r.puppetsIn(nicks)
		if count != last {
			r.logf("after restart: %d/%d puppets back in %s", count, n, r.chanDesc())
			last = count
		}
		if count == n {
			r.res.reconnect = time.Since(t0)
			break
		}
		if time.Since(t0) > limit {
			return fmt.Errorf("after restarting %s only %d of %d puppets were back in %s within %s", r.irc.Kind, count, n, r.chanDesc(), limit)
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	stopSampling()
	wg.Wait()
	r.res.reconnectRSSPeak = peak.Load()
	if _, r.res.hwmAfterRe, err = r.bridgeMem(); err != nil {
		return err
	}
	r.logf("all %d puppets back %s after the restart; peak RSS %s", n, r.res.reconnect.Round(100*time.Millisecond), kb(r.res.reconnectRSSPeak))
	return nil
}

// bridgeMem reads VmRSS and VmHWM (kB) of the bridge process.
func (r *run) bridgeMem() (rss, hwm int64, err error) {
	if r.bridge.Exited() {
		return 0, 0, errors.New("the bridge process has exited")
	}
	rss, hwm, err = procMem(r.bridge.Pid())
	if err != nil {
		return 0, 0, fmt.Errorf("reading the bridge's memory: %w", err)
	}
	return rss, hwm, nil
}

// procAnon reads RssAnon (kB) from /proc/<pid>/status; 0 when it cannot.
func procAnon(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func procMem(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, hwm, sc.Err()
}

// pidByArg finds a process of ours whose command line contains arg (a path under our
// temp dir, so it is unambiguous); 0 if none.
func pidByArg(arg string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(f, 8192))
		f.Close()
		if strings.Contains(string(data), arg) {
			return pid
		}
	}
	return 0
}

func pidRSS(pid int) int64 {
	if pid == 0 {
		return 0
	}
	rss, _, _ := procMem(pid)
	return rss
}

func kb(v int64) string {
	if v == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(v)/1024)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func (r *run) table() string {
	res := r.res
	o := r.o
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "passerelle IRC load run %s on %s (%d CPUs), IRC server %s\n", time.Now().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), o.server)
	fmt.Fprintf(&b, "command: go run ./tests/load -users %d -rooms %d -messages %d -server %s -db %s -workers %d -concurrency %d -probes %d\n",
		o.users, o.rooms, o.messages, o.server, o.db, o.workers, o.concurrency, o.probes)
	section := func(rows [][]string) {
		b.WriteString("\n")
		w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, cols := range rows {
			fmt.Fprintln(w, strings.Join(cols, "\t")+"\t")
		}
		w.Flush()
	}
	section([][]string{
		{"setup", "count", "time", "rate"},
		{"register users (Dendrite)", strconv.Itoa(o.users), res.regTime.Round(time.Millisecond).String(), fmt.Sprintf("%.0f/s", float64(o.users)/res.regTime.Seconds())},
		{fmt.Sprintf("join the portals (%d rooms)", o.rooms), strconv.Itoa(o.users), res.joinTime.Round(time.Millisecond).String(), fmt.Sprintf("%.0f/s", float64(o.users)/res.joinTime.Seconds())},
		{"then all puppets in NAMES", strconv.Itoa(res.puppets), res.puppetTime.Round(time.Millisecond).String(), fmt.Sprintf("fallback msgs %d", res.fallbackMessages)},
	})
	per := float64(res.rssAfter-res.rssBefore) / float64(max(res.puppets, 1))
	section([][]string{
		{"bridge memory (VmRSS)", "value"},
		{"before any puppet (bot only)", kb(res.rssBefore)},
		{"  of which anonymous (RssAnon)", kb(res.anonBefore)},
		{fmt.Sprintf("with %d puppets connected", res.puppets), kb(res.rssAfter)},
		{"  of which anonymous (RssAnon)", kb(res.anonAfter)},
		{"per puppet = delta / N", fmt.Sprintf("%.0f KiB", per)},
		{"VmHWM with puppets", kb(res.hwmAfter)},
		{"after all message phases", kb(res.rssAfterMsgs)},
		{"(Dendrite RSS, IRC server RSS)", kb(res.dendriteRSS) + ", " + kb(res.ircRSS)},
	})
	rows := [][]string{{"burst: M messages", "count", "msg/s", "p50", "p99", "max", "bridge CPU/msg", "own p50", "own p99"}}
	for _, m := range []*measure{res.m2i, res.i2m, res.m2m, res.i2i} {
		rows = append(rows, []string{m.name, strconv.Itoa(m.received), fmt.Sprintf("%.1f", m.rate()), ms(m.pct(0.5)), ms(m.pct(0.99)), ms(m.pct(1)),
			m.cpuPerMsg(), m.ownPct(0.5), m.ownPct(0.99)})
	}
	section(rows)
	rows = [][]string{{"idle: sequential probes", "count", "p50", "p99", "max", "bridge CPU/msg", "own p50", "own p99"}}
	for _, m := range []*measure{res.m2iIdle, res.i2mIdle, res.m2mIdle, res.i2iIdle} {
		rows = append(rows, []string{m.name, strconv.Itoa(m.received), ms(m.pct(0.5)), ms(m.pct(0.99)), ms(m.pct(1)),
			m.cpuPerMsg(), m.ownPct(0.5), m.ownPct(0.99)})
	}
	section(rows)
	added := func(bridged, mm, ii *measure, p float64) string {
		return ms(bridged.pct(p) - mm.pct(p) - ii.pct(p))
	}
	section([][]string{
		{"bridge-added latency (ESTIMATE)", "idle p50", "idle p99", "burst p50", "burst p99"},
		{"Matrix→IRC", added(res.m2iIdle, res.m2mIdle, res.i2iIdle, 0.5), added(res.m2iIdle, res.m2mIdle, res.i2iIdle, 0.99),
			added(res.m2i, res.m2m, res.i2i, 0.5), added(res.m2i, res.m2m, res.i2i, 0.99)},
		{"IRC→Matrix", added(res.i2mIdle, res.m2mIdle, res.i2iIdle, 0.5), added(res.i2mIdle, res.m2mIdle, res.i2iIdle, 0.99),
			added(res.i2m, res.m2m, res.i2i, 0.5), added(res.i2m, res.m2m, res.i2i, 0.99)},
	})
	section([][]string{
		{"IRC server restart", "value"},
		{"until all puppets back in the channels", res.reconnect.Round(100 * time.Millisecond).String()},
		{"peak VmRSS meanwhile (200 ms samples)", kb(res.reconnectRSSPeak)},
		{"VmHWM before / after the restart", kb(res.hwmBeforeRestart) + " / " + kb(res.hwmAfterRe)},
	})
	fmt.Fprintf(&b, `
How to read this:
- Latency = start of the send call -> first sight at the receiver (a raw IRC client's
  line, or the observer's /sync). Bodies are unique, so each message is matched.
- idle: %d messages sent one at a time, each after the previous arrived.
- burst: %d messages at once; Matrix senders are %d concurrent clients spread over the
  users, the IRC sender is one raw client writing as fast as it can. Burst percentiles
  include queueing: they show saturation, not a round trip. msg/s = messages /
  (first send -> last receive).
- bridge-added latency is an ESTIMATE, computed as
      bridged pXX - (Matrix->Matrix baseline pXX + IRC->IRC baseline pXX)
  because a bridged message crosses a Matrix leg (client -> Dendrite -> appservice
  push, compared with client -> Dendrite -> /sync) and an IRC leg (server relay). Both
  baselines run on this machine, in rooms/channels the bridge is not in. Percentiles
  do not add exactly and an appservice push is not a /sync, so read it as an order of
  magnitude; a negative value means "within the noise of the baselines".
- bridge CPU/msg = the bridge process's user + system CPU time (/proc/<pid>/stat)
  from just before the phase until 1 s after its last message arrived, divided by the
  messages; the IRC connections' work (every puppet reading every channel line) is in
  it. 10 ms clock ticks: read the idle rows (few messages) as coarse.
- own p50/p99 = the bridge's own share of each message's time, from its metrics
  (passerelle_event_bridge_seconds): from the event's arrival in the bridge (the
  transaction stored, the IRC line queued) to its last effect returning, less the time
  spent waiting for Dendrite's answers and behind earlier messages of the same room
  (a room's messages are sent one after another, to keep their order). Bucketed (0.5, 1, 2, 3, 5, 7.5, 10, 20 ms, ...),
  interpolated as Prometheus' histogram_quantile does. This measures what the estimate
  above guesses at.
- memory per puppet = (VmRSS with N puppets - VmRSS before any) / N. Go's RSS holds
  garbage not yet returned to the OS, so this is an estimate.
`, o.probes, o.messages, o.concurrency)
	return b.String()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
