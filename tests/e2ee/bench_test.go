package e2ee

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

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
			net, err := loopnet.New()
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(net.Close)
			run := startBridge(b, ctx, "sqlite", connectors(net.URL), map[string]any{"encryption": map[string]any{"default": encrypted}})
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
			for i := 0; i < b.N; i++ {
				net.Inject(loopnet.Event{Chat: chat, Sender: "sam", Text: fmt.Sprintf("message %d", i)})
			}
			if _, err = reader.WaitMessage(ctx, room, harness.E2EEText(ghost, fmt.Sprintf("message %d", b.N-1))); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			used := cpuTime(b, run.b.Pid()) - before
			b.ReportMetric(float64(used.Microseconds())/1000/float64(b.N), "bridge-cpu-ms/msg")
		})
	}
}
