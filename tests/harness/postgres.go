package harness

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	// The PostgreSQL driver, registered as "postgres".
	_ "github.com/lib/pq"
)

// DefaultPostgresURI is the maintenance connection NewPostgresDB uses unless
// $PASSERELLE_TEST_POSTGRES says otherwise.
const DefaultPostgresURI = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PostgresAdminURI is $PASSERELLE_TEST_POSTGRES or DefaultPostgresURI.
func PostgresAdminURI() string {
	if uri := os.Getenv("PASSERELLE_TEST_POSTGRES"); uri != "" {
		return uri
	}
	return DefaultPostgresURI
}

// NewPostgresDB creates an empty database named passerelle_test_<random> on the
// server of PostgresAdminURI and returns a URI for it (the admin URI with the
// database name replaced). drop terminates the database's remaining connections and
// drops it; it logs nothing and ignores errors, so it suits t.Cleanup.
func NewPostgresDB(ctx context.Context) (uri string, drop func(), err error) {
	admin := PostgresAdminURI()
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("parsing PostgreSQL URI %q: %w", admin, err)
	}
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return "", nil, fmt.Errorf("opening PostgreSQL %s: %w", redact(u), err)
	}
	defer db.Close()
	name := "passerelle_test_" + randomHex(6)
	// Database names cannot be bound as parameters; name is [a-z0-9_] only.
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("creating database %s on %s: %w", name, redact(u), err)
	}
	dbURL := *u
	dbURL.Path = "/" + name
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("postgres", admin)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.ExecContext(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
		_, _ = db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
	}
	return dbURL.String(), drop, nil
}

// PostgresDatabaseExists reports whether a database of that name exists on the
// server of PostgresAdminURI.
func PostgresDatabaseExists(ctx context.Context, name string) (bool, error) {
	db, err := sql.Open("postgres", PostgresAdminURI())
	if err != nil {
		return false, fmt.Errorf("opening PostgreSQL: %w", err)
	}
	defer db.Close()
	var exists bool
	err = db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		return false, fmt.Errorf("looking up database %s: %w", name, err)
	}
	return exists, nil
}

// redact hides the password of a URI for error messages.
func redact(u *url.URL) string {
	return strings.TrimSpace(u.Redacted())
}
