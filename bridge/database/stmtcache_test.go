package database_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/passerelle/passerelle/bridge/database"
	"github.com/passerelle/passerelle/bridge/database/dbtest"
)

// TestStatementCache: statements kept per connection give the same answers as fresh
// ones, including (SQLite) a statement used again while rows from it are still being
// read (in one transaction, so on one connection), more distinct statements than the cache
// holds, and a query that fails; the statistics count what ran.
func TestStatementCache(t *testing.T) {
	for _, be := range dbtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			db, err := database.Open(ctx, be.Name, be.URI(t), 0, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for i := 0; i < 5; i++ {
				if _, err = db.Exec(ctx, `INSERT INTO inbox_seen (dedup_key, received_at) VALUES ($1, $2)`, fmt.Sprintf("k%d", i), int64(i)); err != nil {
					t.Fatal(err)
				}
			}
			const list = `SELECT dedup_key FROM inbox_seen WHERE received_at >= $1 ORDER BY received_at`
			// lib/pq reads one result at a time per connection, cached statements or
			// not; the nested reading is SQLite's.
			nested := be.Name == "sqlite"
			err = db.DoTxn(ctx, nil, func(ctx context.Context) error {
				outer, err := db.Query(ctx, list, 0)
				if err != nil {
					return err
				}
				defer outer.Close()
				var got []string
				for outer.Next() {
					var key string
					if err = outer.Scan(&key); err != nil {
						return err
					}
					if !nested {
						got = append(got, key+":2")
						continue
					}
					// The same statement again while the outer rows are open.
					var n int
					inner, err := db.Query(ctx, list, 3)
					if err != nil {
						return err
					}
					for inner.Next() {
						n++
					}
					if err = inner.Close(); err != nil {
						return err
					}
					got = append(got, fmt.Sprintf("%s:%d", key, n))
				}
				if want := "k0:2 k1:2 k2:2 k3:2 k4:2"; strings.Join(got, " ") != want {
					return fmt.Errorf("read %v, want %s", got, want)
				}
				return outer.Err()
			})
			if err != nil {
				t.Fatal(err)
			}
			// More distinct statements than one connection keeps.
			for i := 0; i < 600; i++ {
				var key string
				q := fmt.Sprintf(`SELECT dedup_key FROM inbox_seen WHERE received_at=$1 AND %d=%d`, i, i)
				if err = db.QueryRow(ctx, q, int64(i%5)).Scan(&key); err != nil || key != fmt.Sprintf("k%d", i%5) {
					t.Fatalf("statement %d: %q, %v", i, key, err)
				}
			}
			if _, err = db.Exec(ctx, `INSERT INTO no_such_table (x) VALUES ($1)`, 1); err == nil {
				t.Fatal("a statement on a missing table succeeded")
			}
			var key string
			if err = db.QueryRow(ctx, list, 4).Scan(&key); err != nil || key != "k4" {
				t.Fatalf("after an error: %q, %v", key, err)
			}
			var stats strings.Builder
			if _, err = db.Stats.WriteTo(&stats); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stats.String(), "SELECT dedup_key FROM inbox_seen WHERE received_at >=") {
				t.Fatalf("statistics miss the listing:\n%.400s", stats.String())
			}
		})
	}
}
