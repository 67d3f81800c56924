package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
)

// CPUProfile asks a bridge's diagnostics listener (metrics.listen with pprof on) for
// a CPU profile of the next seconds and writes it to path, for `go tool pprof`.
func CPUProfile(ctx context.Context, listen string, seconds int, path string) error {
	return fetchTo(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", listen, seconds), path)
}

// HeapProfile asks a bridge's diagnostics listener for a heap profile (after a
// garbage collection) and writes it to path.
func HeapProfile(ctx context.Context, listen, path string) error {
	return fetchTo(ctx, fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", listen), path)
}

// fetchTo writes what url serves to path.
func fetchTo(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err = io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}

// QueryCounts reads a bridge's statement counts (the diagnostics listener's
// /debug/queries), keyed by statement.
func QueryCounts(ctx context.Context, listen string) (map[string]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+"/debug/queries", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking for statement counts: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	counts := map[string]int64{}
	for _, line := range strings.Split(string(body), "\n")[1:] {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		counts[strings.Join(fields[2:], " ")] = n
	}
	return counts, nil
}

// WriteQueryDelta writes the statements run between two QueryCounts, most first, with
// the count per unit of work (per message, say) so a benchmark shows its round trips.
func WriteQueryDelta(path string, before, after map[string]int64, units int) error {
	type row struct {
		sql string
		n   int64
	}
	var rows []row
	var all int64
	for q, n := range after {
		if d := n - before[q]; d > 0 {
			rows = append(rows, row{q, d})
			all += d
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].n > rows[j].n })
	var b strings.Builder
	fmt.Fprintf(&b, "%.2f statements per unit (%d units)\n", float64(all)/float64(units), units)
	for _, r := range rows {
		fmt.Fprintf(&b, "%6.2f  %s\n", float64(r.n)/float64(units), r.sql)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
