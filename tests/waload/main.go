// Command waload measures the WhatsApp connector on the whole real stack except
// WhatsApp itself (Dendrite, the passerelle binary, the fake WhatsApp network): N Matrix
// users each link an account, then the tool reports the bridge's memory per linked
// account and the throughput each way through the bridge.
//
//	go run ./tests/waload -accounts 50 -messages 20
//
// Every wait is bounded; it exits non-zero with the bridge log tail on failure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/whatsapp/fakewa"
	"github.com/passerelle/passerelle/tests/harness"
)

func main() {
	accounts := flag.Int("accounts", 50, "WhatsApp accounts to link (one Matrix user each)")
	messages := flag.Int("messages", 20, "messages per account each way")
	dbType := flag.String("db", "sqlite", "sqlite or postgres")
	profile := flag.String("profile", "", "write heap profiles before and after the logins into this directory, and print what the sessions' memory is made of")
	flag.Parse()
	if err := run(*accounts, *messages, *dbType, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "waload:", err)
		os.Exit(1)
	}
}

func run(n, m int, dbType, profile string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "passerelle-waload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := harness.BuildBridge(ctx, "passerelle_loopback")
	if err != nil {
		return err
	}
	wa, err := fakewa.NewServer()
	if err != nil {
		return err
	}
	defer wa.Close()
	port, err := harness.FreePort()
	if err != nil {
		return err
	}
	dbURI := filepath.Join(dir, "passerelle.db")
	if dbType == "postgres" {
		uri, drop, err := harness.NewPostgresDB(ctx)
		if err != nil {
			return err
		}
		defer drop()
		dbURI = uri
	}
	mport, err := harness.FreePort()
	if err != nil {
		return err
	}
	listen := fmt.Sprintf("127.0.0.1:%d", mport)
	params := harness.BridgeConfigParams{Port: port, DatabaseType: dbType, DatabaseURI: dbURI, LogLevel: "info", MetricsListen: listen,
		Permissions: map[string]string{harness.DefaultDomain: "user"},
		Connectors:  map[string]any{"whatsapp": map[string]any{"fake_network": wa.Addr(), "history_count": 0}}}
	st, err := harness.StartStack(ctx, dir, bin, params)
	if err != nil {
		return err
	}
	defer st.HS.Stop()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err = st.WriteConfig(cfgPath, params); err != nil {
		return err
	}
	br, err := harness.StartBridge(ctx, bin, cfgPath, st.RegPath, filepath.Join(dir, "bridge.log"))
	if err != nil {
		return err
	}
	defer br.Stop()
	fail := func(err error) error { return fmt.Errorf("%w\n--- bridge log tail ---\n%s", err, br.LogTail(40)) }
	rssBefore, err := rssKB(br.Pid())
	if err != nil {
		return err
	}
	heapBefore := filepath.Join(profile, "heap-before-"+dbType+".pprof")
	if profile != "" {
		if err = harness.HeapProfile(ctx, listen, heapBefore); err != nil {
			return err
		}
	}

	type account struct {
		user  *harness.User
		conn  *fakewa.Conn
		phone string
		dm    id.RoomID
	}
	accts := make([]*account, n)
	bot := id.NewUserID("passerelle", harness.DefaultDomain)
	loginStart := time.Now()
	for i := range accts {
		a := &account{phone: fmt.Sprintf("3390%07d", i)}
		if a.user, err = st.HS.RegisterUser(ctx, fmt.Sprintf("wl%d", i), false); err != nil {
			return err
		}
		defer a.user.Close()
		resp, err := a.user.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", IsDirect: true, Invite: []id.UserID{bot}})
		if err != nil {
			return err
		}
		if _, err = a.user.WaitEvent(ctx, resp.RoomID, func(e *event.Event) bool {
			return e.Sender == bot && strings.Contains(e.Content.AsMessage().Body, "management room")
		}); err != nil {
			return fail(err)
		}
		if _, err = a.user.SendText(ctx, resp.RoomID, "login whatsapp"); err != nil {
			return err
		}
		used := map[*fakewa.Conn]bool{}
		for _, prev := range accts[:i] {
			used[prev.conn] = true
		}
		if a.conn, err = wa.WaitConn(ctx, func(c *fakewa.Conn) bool { return fakewa.Unpaired(c) && !used[c] }); err != nil {
			return fail(err)
		}
		if err = a.conn.SendQR(ctx, "2@load", time.Minute); err != nil {
			return fail(err)
		}
		if err = a.conn.PairSuccess(ctx, types.NewADJID(a.phone, 0, 1), "Load"); err != nil {
			return fail(err)
		}
		if _, err = a.user.WaitEvent(ctx, resp.RoomID, func(e *event.Event) bool {
			return e.Sender == bot && strings.Contains(e.Content.AsMessage().Body, "Logged in")
		}); err != nil {
			return fail(err)
		}
		accts[i] = a
	}
	loginTime := time.Since(loginStart)
	time.Sleep(2 * time.Second) // let connection-state notices settle before measuring
	rssAfter, err := rssKB(br.Pid())
	if err != nil {
		return err
	}
	var breakdown string
	if profile != "" {
		heapAfter := filepath.Join(profile, fmt.Sprintf("heap-%dsessions-%s.pprof", n, dbType))
		if err = harness.HeapProfile(ctx, listen, heapAfter); err != nil {
			return err
		}
		if breakdown, err = heapDiff(ctx, bin, heapBefore, heapAfter); err != nil {
			return err
		}
	}

	// WhatsApp → Matrix: every account receives m messages from one contact.
	in := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, a := range accts {
		wg.Add(1)
		go func(i int, a *account) {
			defer wg.Done()
			contact := types.NewJID(fmt.Sprintf("3391%07d", i), types.DefaultUserServer)
			for j := 0; j < m; j++ {
				msg := &waE2E.Message{Conversation: proto.String("load " + strconv.Itoa(j))}
				evt := &events.Message{Info: types.MessageInfo{MessageSource: types.MessageSource{Chat: contact, Sender: contact},
					ID: fmt.Sprintf("L%d-%d", i, j), PushName: "Contact", Timestamp: time.Now()}, Message: msg}
				if err := a.conn.Dispatch(ctx, evt); err != nil {
					errs <- err
					return
				}
			}
			last := "load " + strconv.Itoa(m-1)
			room, _, err := a.user.WaitAnyEvent(ctx, func(_ id.RoomID, e *event.Event) bool {
				return e.Type == event.EventMessage && e.Content.AsMessage().Body == last
			})
			if err != nil {
				errs <- err
				return
			}
			a.dm = room
		}(i, a)
	}
	wg.Wait()
	close(errs)
	if err = <-errs; err != nil {
		return fail(err)
	}
	inTime := time.Since(in)

	// Matrix → WhatsApp: every user answers m times in their DM.
	cursor := wa.CallCount()
	out := time.Now()
	for _, a := range accts {
		wg.Add(1)
		go func(a *account) {
			defer wg.Done()
			for j := 0; j < m; j++ {
				if _, err := a.user.SendText(ctx, a.dm, "reply "+strconv.Itoa(j)); err != nil {
					return
				}
			}
		}(a)
	}
	wg.Wait()
	sent := 0
	for sent < n*m {
		if _, idx, err := wa.WaitCall(ctx, cursor, fakewa.Op(fakewa.CallSend)); err != nil {
			return fail(fmt.Errorf("after %d of %d messages reached WhatsApp: %w", sent, n*m, err))
		} else {
			cursor = idx + 1
			sent++
		}
	}
	outTime := time.Since(out)
	rssEnd, _ := rssKB(br.Pid())
	peak, _ := statusKB(br.Pid(), "VmHWM:")

	fmt.Printf("accounts linked:              %d in %s (%.1f logins/s)\n", n, loginTime.Round(time.Millisecond), float64(n)/loginTime.Seconds())
	fmt.Printf("bridge RSS:                   %d KiB before, %d KiB with %d sessions (%.0f KiB per session), %d KiB at the end\n",
		rssBefore, rssAfter, n, float64(rssAfter-rssBefore)/float64(n), rssEnd)
	fmt.Printf("bridge peak RSS:              %d KiB (VmHWM, the whole run)\n", peak)
	fmt.Printf("WhatsApp → Matrix:            %d messages in %s (%.0f msg/s), %d DM portals created on the way\n",
		n*m, inTime.Round(time.Millisecond), float64(n*m)/inTime.Seconds(), n)
	fmt.Printf("Matrix → WhatsApp:            %d messages in %s (%.0f msg/s)\n", n*m, outTime.Round(time.Millisecond), float64(n*m)/outTime.Seconds())
	if breakdown != "" {
		fmt.Printf("\nheap in use that the %d sessions added, by where it was allocated (go tool pprof -top -diff_base):\n%s", n, breakdown)
	}
	return nil
}

// heapDiff is go tool pprof's table of the heap in use that after holds beyond before,
// by the function that allocated it, the largest first.
func heapDiff(ctx context.Context, bin, before, after string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=30", "-sample_index=inuse_space",
		"-diff_base", before, bin, after)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %w\n%s", err, out)
	}
	return string(out), nil
}

// rssKB reads a process's resident memory.
func rssKB(pid int) (int64, error) { return statusKB(pid, "VmRSS:") }

// statusKB reads one kB figure of a process's /proc status (VmRSS:, VmHWM:).
func statusKB(pid int, field string) (int64, error) { return harness.ProcStatusKB(pid, field) }
