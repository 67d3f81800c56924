package database

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// QueryStats counts the statements run and the time spent in them, per statement
// text, so round trips per event can be read off a live bridge (the diagnostics
// listener's /debug/queries) rather than guessed.
type QueryStats struct {
	mu    sync.Mutex
	bySQL map[string]*queryStat
}

type queryStat struct {
	count int64
	total time.Duration
}

// NewQueryStats returns empty statistics.
func NewQueryStats() *QueryStats { return &QueryStats{bySQL: map[string]*queryStat{}} }

// start begins timing one statement; the returned function ends it. A nil
// QueryStats counts nothing.
func (s *QueryStats) start(query string) func() {
	if s == nil {
		return func() {}
	}
	began := time.Now()
	return func() {
		took := time.Since(began)
		s.mu.Lock()
		st := s.bySQL[query]
		if st == nil {
			st = &queryStat{}
			s.bySQL[query] = st
		}
		st.count++
		st.total += took
		s.mu.Unlock()
	}
}

// WriteTo writes one line per statement, most run first: count, total time,
// statement (whitespace folded).
func (s *QueryStats) WriteTo(w io.Writer) (int64, error) {
	type row struct {
		sql string
		queryStat
	}
	s.mu.Lock()
	rows := make([]row, 0, len(s.bySQL))
	var all int64
	for q, st := range s.bySQL {
		rows = append(rows, row{q, *st})
		all += st.count
	}
	s.mu.Unlock()
	sort.Slice(rows, func(i, j int) bool { return rows[i].count > rows[j].count })
	var n int64
	c, err := fmt.Fprintf(w, "%d statements\n", all)
	n += int64(c)
	for _, r := range rows {
		if err != nil {
			break
		}
		c, err = fmt.Fprintf(w, "%8d %10s  %s\n", r.count, r.total.Round(time.Microsecond), strings.Join(strings.Fields(r.sql), " "))
		n += int64(c)
	}
	return n, err
}
