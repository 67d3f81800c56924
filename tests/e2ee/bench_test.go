package e2ee

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/connectors/loopback/loopnet"
	"github.com/passerelle/passerelle/tests/harness"
)

// cpuTime is a process's user+system CPU time so far (Linux /proc), in clock ticks of
// 10 ms.
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start after the last ')'.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkNetworkToMatrix measures the bridge's CPU per message from a network into a
// room, encrypted and clear, read by the independent client:
//
//	GOFLAGS=-tags=goolm go test -run x -bench NetworkToMatrix -benchtime 200x ./tests/e2ee/
func BenchmarkNetworkToMatrix(b *testing.B) {
	for _, encrypted := range []bool{true, false} {
		name := map[bool]string{true: "encrypted", false: "clear"}[encrypted]
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			net := newLoopnet(b)
			opts, profile := profiling(b, bridgeOpts{extra: map[string]any{"encryption": map[string]any{"default": encrypted}}, logLevel: "info"})
			run := startBridgeWith(b, ctx, "sqlite", connectors(net.URL), opts)
			_, reader := newE2EEUser(b, ctx, "bench")
			chat := fmt.Sprintf("#bench%d", time.Now().UnixNano()%1e6)
			room, err := reader.Join(ctx, "#loopback_"+strings.TrimPrefix(chat, "#")+":"+harness.DefaultDomain)
			if err != nil {
				b.Fatal(err)
			}
			ghost := id.NewUserID("loopback_sam", harness.DefaultDomain)
			// One message first: ghost registration and the room key are not per message.
			net.Inject(loopnet.Event{Chat: chat, Sender: "sam", Text: "warm-up"})
			if _, err = reader.WaitMessage(ctx, room, harness.E2EEText(ghost, "warm-up")); err != nil {
				b.Fatal(err)
			}
			before := cpuTime(b, run.b.Pid())
			b.ResetTimer()
			profiled := profile(ctx)
			for i := 0; i < b.N; i++ {
				net.Inject(loopnet.Event{Chat: chat, Sender: "sam", Text: fmt.Sprintf("message %d", i)})
			}
			if _, err = reader.WaitMessage(ctx, room, harness.E2EEText(ghost, fmt.Sprintf("message %d", b.N-1))); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			profiled()
			used := cpuTime(b, run.b.Pid()) - before
			b.ReportMetric(float64(used.Microseconds())/1000/float64(b.N), "bridge-cpu-ms/msg")
		})
	}
}

// BenchmarkMatrixToNetwork measures the bridge's CPU per message from an encrypted
// (and a clear) plumbed room to the network, sent by the independent client:
//
//	GOFLAGS=-tags=goolm go test -run x -bench MatrixToNetwork -benchtime 200x ./tests/e2ee/
func BenchmarkMatrixToNetwork(b *testing.B) {
	for _, encrypted := range []bool{true, false} {
		name := map[bool]string{true: "encrypted", false: "clear"}[encrypted]
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			net := newLoopnet(b)
			opts, profile := profiling(b, bridgeOpts{logLevel: "info"})
			run := startBridgeWith(b, ctx, "sqlite", connectors(net.URL), opts)
			_, writer := newE2EEUser(b, ctx, "writer")
			account := "writer-net"
			loopbackLogin(b, ctx, writer, account)
			chat := fmt.Sprintf("#out%d", time.Now().UnixNano()%1e6)
			room, err := writer.CreateRoom(ctx, harness.E2EERoom{Name: "Bench " + chat, Invite: []id.UserID{bot()}, Unencrypted: !encrypted})
			if err != nil {
				b.Fatal(err)
			}
			waitBotAs(b, ctx, writer, room, "plumb", encrypted)
			if _, err = writer.SendText(ctx, room, "!pass plumb loopback "+chat); err != nil {
				b.Fatal(err)
			}
			waitBotAs(b, ctx, writer, room, "now linked", encrypted)
			if _, err = writer.SendText(ctx, room, "warm-up"); err != nil {
				b.Fatal(err)
			}
			if _, err = net.WaitEvent(ctx, chat, func(e loopnet.Event) bool { return e.Text == "warm-up" }); err != nil {
				b.Fatal(err)
			}
			before := cpuTime(b, run.b.Pid())
			b.ResetTimer()
			profiled := profile(ctx)
			for i := 0; i < b.N; i++ {
				if _, err = writer.SendText(ctx, room, fmt.Sprintf("message %d", i)); err != nil {
					b.Fatal(err)
				}
			}
			last := fmt.Sprintf("message %d", b.N-1)
			if _, err = net.WaitEvent(ctx, chat, func(e loopnet.Event) bool { return e.Sender == account && e.Text == last }); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			profiled()
			used := cpuTime(b, run.b.Pid()) - before
			b.ReportMetric(float64(used.Microseconds())/1000/float64(b.N), "bridge-cpu-ms/msg")
		})
	}
}

// BenchmarkKeyShare50Devices measures how long sharing a room key with 50 devices
// takes the bridge: a member with 50 devices joins a portal, so the next message needs a
// new room key for all of them (Olm sessions made from claimed one-time keys, the key
// encrypted per device, sent to-device); the time until the independent client reads
// it is compared with the message after it, which needs no sharing:
//
//	GOFLAGS=-tags=goolm go test -run x -bench KeyShare50Devices -benchtime 20x ./tests/e2ee/
func BenchmarkKeyShare50Devices(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	net := newLoopnet(b)
	run := startBridgeWith(b, ctx, "sqlite", connectors(net.URL),
		bridgeOpts{extra: map[string]any{"encryption": map[string]any{"default": true}}, logLevel: "info"})
	_, reader := newE2EEUser(b, ctx, "reader")
	loopbackLogin(b, ctx, reader, "reader-net")
	many := newDevices(b, ctx, "many", 50)
	ghost := id.NewUserID("loopback_pat", harness.DefaultDomain)
	pid := run.b.Pid()
	var shareWall, plainWall, shareCPU, plainCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		chat := fmt.Sprintf("#share%d_%d", time.Now().UnixNano()%1e6, i)
		room, err := reader.Join(ctx, "#loopback_"+strings.TrimPrefix(chat, "#")+":"+harness.DefaultDomain)
		if err != nil {
			b.Fatal(err)
		}
		net.Inject(loopnet.Event{Chat: chat, Sender: "pat", Text: "before the devices"})
		if _, err = reader.WaitMessage(ctx, room, harness.E2EEText(ghost, "before the devices")); err != nil {
			b.Fatal(err)
		}
		if _, err = many.JoinRoomByID(ctx, room); err != nil {
			b.Fatal(err)
		}
		if err = reader.WaitMember(ctx, room, many.UserID, event.MembershipJoin); err != nil {
			b.Fatal(err)
		}
		// The room's Matrix lane is ordered: once the reader's next message reached the
		// network, the bridge has handled the join (and dropped the old room key).
		marker := fmt.Sprintf("after the join %d", i)
		if _, err = reader.SendText(ctx, room, marker); err != nil {
			b.Fatal(err)
		}
		if _, err = net.WaitEvent(ctx, chat, func(e loopnet.Event) bool { return e.Text == marker }); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		// measure sends text and returns the wall time until the reader has it and the
		// bridge's CPU time meanwhile.
		measure := func(text string) (wall, cpu time.Duration) {
			start, cpuStart := time.Now(), cpuTime(b, pid)
			net.Inject(loopnet.Event{Chat: chat, Sender: "pat", Text: text})
			if _, err := reader.WaitMessage(ctx, room, harness.E2EEText(ghost, text)); err != nil {
				b.Fatal(err)
			}
			return time.Since(start), cpuTime(b, pid) - cpuStart
		}
		wall, cpu := measure("needs a new key")
		shareWall, shareCPU = shareWall+wall, shareCPU+cpu
		wall, cpu = measure("needs none")
		plainWall, plainCPU = plainWall+wall, plainCPU+cpu
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(per(shareWall), "ms-wall-with-key-share")
	b.ReportMetric(per(plainWall), "ms-wall-without")
	b.ReportMetric(per(shareCPU), "ms-bridge-cpu-with-key-share")
	b.ReportMetric(per(plainCPU), "ms-bridge-cpu-without")
}

// BenchmarkEncryptedPortalsMemory measures the bridge's memory with 200 encrypted
// portals, each with a room key in use, against 200 clear ones:
//
//	GOFLAGS=-tags=goolm go test -run x -bench EncryptedPortalsMemory -benchtime 1x ./tests/e2ee/
func BenchmarkEncryptedPortalsMemory(b *testing.B) {
	for _, encrypted := range []bool{true, false} {
		name := map[bool]string{true: "encrypted", false: "clear"}[encrypted]
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			net := newLoopnet(b)
			run := startBridgeWith(b, ctx, "sqlite", connectors(net.URL), bridgeOpts{extra: map[string]any{"encryption": map[string]any{"default": encrypted}}, logLevel: "info"})
			user, err := shared.HS.RegisterUser(ctx, fmt.Sprintf("mem_%d", time.Now().UnixNano()%1e9), false)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(user.Close)
			ghost := id.NewUserID("loopback_quinn", harness.DefaultDomain)
			const portals = 200
			baseline := rss(b, run.b.Pid())
			for i := 0; i < portals; i++ {
				chat := fmt.Sprintf("mem%d_%d", i, time.Now().UnixNano()%1e6)
				room, err := user.JoinAndWait(ctx, "#loopback_"+chat+":"+harness.DefaultDomain)
				if err != nil {
					b.Fatal(err)
				}
				net.Inject(loopnet.Event{Chat: "#" + chat, Sender: "quinn", Text: "keep a key in use"})
				if _, err = user.WaitEvent(ctx, room, func(e *event.Event) bool { return e.Sender == ghost }); err != nil {
					b.Fatal(err)
				}
			}
			after := rss(b, run.b.Pid())
			b.ReportMetric(float64(baseline)/1024, "rss-MiB-before")
			b.ReportMetric(float64(after)/1024, "rss-MiB-200-portals")
			b.ReportMetric(float64(after-baseline)/portals, "rss-KiB/portal")
		})
	}
}

// rss is a process's resident memory in KiB (Linux /proc).
func rss(tb testing.TB, pid int) int64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, _ := strconv.ParseInt(f[1], 10, 64)
			return kib
		}
	}
	tb.Fatal("no VmRSS in /proc status")
	return 0
}

// newDevices registers a user with n devices, each with its identity and one-time
// keys on the server (mautrix's Olm machine, state in memory: these devices only need
// to receive room keys), and returns the user's first, plain client.
func newDevices(tb testing.TB, ctx context.Context, name string, n int) *harness.User {
	tb.Helper()
	user, err := shared.HS.RegisterUser(ctx, fmt.Sprintf("%s_%d", name, time.Now().UnixNano()%1e9), false)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(user.Close)
	log := zerolog.Nop()
	for i := 0; i < n; i++ {
		token, device, err := harness.LoginNewDevice(ctx, shared.HS, user.UserID, harness.TestPassword, fmt.Sprintf("device %d", i))
		if err != nil {
			tb.Fatal(err)
		}
		client, err := shared.HS.NewClient(user.UserID, token)
		if err != nil {
			tb.Fatal(err)
		}
		client.DeviceID = device
		mach := crypto.NewOlmMachine(client, &log, crypto.NewMemoryStore(nil), memoryStateStore{})
		if err = mach.Load(ctx); err != nil {
			tb.Fatal(err)
		}
		if err = mach.ShareKeys(ctx, 0); err != nil {
			tb.Fatalf("uploading device %d's keys: %v", i, err)
		}
	}
	return user
}

// memoryStateStore is the room state the benchmark's extra devices need: none.
type memoryStateStore struct{}

func (memoryStateStore) IsEncrypted(context.Context, id.RoomID) (bool, error) { return false, nil }
func (memoryStateStore) GetEncryptionEvent(context.Context, id.RoomID) (*event.EncryptionEventContent, error) {
	return nil, nil
}
func (memoryStateStore) FindSharedRooms(context.Context, id.UserID) ([]id.RoomID, error) {
	return nil, nil
}

// profiling returns bridgeOpts that open the profiler when PASSERELLE_BENCH_PROFILE
// names a directory, and a function that takes a CPU profile of the bridge for the
// next PASSERELLE_BENCH_PROFILE_SECONDS (default 10) into that directory, returning a
// wait for it; the statements run per message go beside it (.queries). Choose -benchtime so the measured loop lasts at least that long.
func profiling(b *testing.B, opts bridgeOpts) (bridgeOpts, func(ctx context.Context) (wait func())) {
	dir := os.Getenv("PASSERELLE_BENCH_PROFILE")
	if dir == "" {
		return opts, func(context.Context) func() { return func() {} }
	}
	port, err := harness.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	opts.metricsListen = fmt.Sprintf("127.0.0.1:%d", port)
	seconds := 10
	if s, err := strconv.Atoi(os.Getenv("PASSERELLE_BENCH_PROFILE_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	path := fmt.Sprintf("%s/%s.pprof", dir, strings.ReplaceAll(b.Name(), "/", "_"))
	return opts, func(ctx context.Context) func() {
		before, err := harness.QueryCounts(ctx, opts.metricsListen)
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- harness.CPUProfile(ctx, opts.metricsListen, seconds, path) }()
		return func() {
			after, err := harness.QueryCounts(ctx, opts.metricsListen)
			if err == nil {
				err = harness.WriteQueryDelta(strings.TrimSuffix(path, ".pprof")+".queries", before, after, b.N)
			}
			if err != nil {
				b.Error(err)
			}
			if err := <-done; err != nil {
				b.Error(err)
			} else {
				b.Logf("CPU profile of the bridge: %s", path)
			}
		}
	}
}
