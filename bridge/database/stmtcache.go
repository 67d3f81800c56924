package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
)

// stmtCacheSize bounds the prepared statements one connection keeps. The bridge, the
// crypto store, the state store and whatsmeow's store run a few hundred distinct
// statements in all; the hot path uses a few dozen.
const stmtCacheSize = 512

// openCached opens a database whose connections keep their prepared statements. Every
// parametrised query otherwise pays for being prepared again: a SQLite compile on each
// call, and with lib/pq an extra round trip (Parse/Describe, then Bind/Execute) to the
// server. The statements are reused per connection, so nothing changes for callers.
func openCached(driverName, dsn string, stats *QueryStats) (*sql.DB, error) {
	probe, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, err
	}
	drv := probe.Driver()
	// sql.Open only parses; closing the probe closes no connection.
	_ = probe.Close()
	var inner driver.Connector
	if dc, ok := drv.(driver.DriverContext); ok {
		if inner, err = dc.OpenConnector(dsn); err != nil {
			return nil, err
		}
	} else {
		inner = dsnConnector{dsn: dsn, drv: drv}
	}
	return sql.OpenDB(&cachingConnector{inner: inner, stats: stats}), nil
}

// dsnConnector is the connector of a driver that has none of its own.
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

// cachingConnector hands out connections that keep their prepared statements.
type cachingConnector struct {
	inner driver.Connector
	stats *QueryStats
}

func (c *cachingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	prep, ok := conn.(driver.ConnPrepareContext)
	if !ok {
		return conn, nil
	}
	return &cachingConn{Conn: conn, prep: prep, stmts: map[string]*cachedStmt{}, stats: c.stats}, nil
}

func (c *cachingConnector) Driver() driver.Driver { return c.inner.Driver() }

// cachingConn is one connection with its statements. database/sql uses a connection
// from one goroutine at a time, so the map needs no lock.
type cachingConn struct {
	driver.Conn
	prep  driver.ConnPrepareContext
	stmts map[string]*cachedStmt
	// tick orders uses, to evict the least recently used statement when full.
	tick  uint64
	stats *QueryStats
}

type cachedStmt struct {
	stmt     driver.Stmt
	lastUsed uint64
	// busy is set while rows read from the statement are open: a second use then
	// gets a statement of its own, so the first rows are not reset under it.
	busy bool
}

// cacheable tells which queries keep their statement: those with parameters (the
// others run without a prepare step) and with a single statement (SQLite prepares
// only the first statement of a script).
func cacheable(query string, nargs int) bool {
	if nargs == 0 {
		return false
	}
	q := strings.TrimRight(strings.TrimSpace(query), ";")
	return !strings.Contains(q, ";")
}

// statement returns the connection's statement for query, and whether it is a
// temporary one the caller must close.
func (c *cachingConn) statement(ctx context.Context, query string) (*cachedStmt, bool, error) {
	c.tick++
	if cs, ok := c.stmts[query]; ok && !cs.busy {
		cs.lastUsed = c.tick
		return cs, false, nil
	} else if ok {
		st, err := c.prep.PrepareContext(ctx, query)
		return &cachedStmt{stmt: st}, true, err
	}
	st, err := c.prep.PrepareContext(ctx, query)
	if err != nil {
		return nil, false, err
	}
	if len(c.stmts) >= stmtCacheSize {
		c.evict()
	}
	cs := &cachedStmt{stmt: st, lastUsed: c.tick}
	c.stmts[query] = cs
	return cs, false, nil
}

func (c *cachingConn) evict() {
	var oldest string
	var at uint64
	for q, cs := range c.stmts {
		if !cs.busy && (oldest == "" || cs.lastUsed < at) {
			oldest, at = q, cs.lastUsed
		}
	}
	if oldest != "" {
		_ = c.stmts[oldest].stmt.Close()
		delete(c.stmts, oldest)
	}
}

// ExecContext runs through the cached statement; queries it does not cache go to
// the driver as before.
func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	done := c.stats.start(query)
	defer done()
	if !cacheable(query, len(args)) {
		if ex, ok := c.Conn.(driver.ExecerContext); ok {
			return ex.ExecContext(ctx, query, args)
		}
		return nil, driver.ErrSkip
	}
	cs, temp, err := c.statement(ctx, query)
	if err != nil {
		return nil, err
	}
	if temp {
		defer cs.stmt.Close()
	}
	sx, ok := cs.stmt.(driver.StmtExecContext)
	if !ok {
		return nil, fmt.Errorf("statement of %T cannot run with a context", c.Conn)
	}
	return sx.ExecContext(ctx, args)
}

// QueryContext is ExecContext for queries returning rows; the statement stays busy
// until the rows are closed.
func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	done := c.stats.start(query)
	defer done()
	if !cacheable(query, len(args)) {
		if qx, ok := c.Conn.(driver.QueryerContext); ok {
			return qx.QueryContext(ctx, query, args)
		}
		return nil, driver.ErrSkip
	}
	cs, temp, err := c.statement(ctx, query)
	if err != nil {
		return nil, err
	}
	sq, ok := cs.stmt.(driver.StmtQueryContext)
	if !ok {
		if temp {
			_ = cs.stmt.Close()
		}
		return nil, fmt.Errorf("statement of %T cannot run with a context", c.Conn)
	}
	rows, err := sq.QueryContext(ctx, args)
	if err != nil {
		if temp {
			_ = cs.stmt.Close()
		}
		return nil, err
	}
	cs.busy = true
	return &cachedRows{Rows: rows, cs: cs, temp: temp}, nil
}

// PrepareContext is for callers that prepare explicitly; their statements are theirs
// to close, so they are not cached.
func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.prep.PrepareContext(ctx, query)
}

func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if bt, ok := c.Conn.(driver.ConnBeginTx); ok {
		return bt.BeginTx(ctx, opts)
	}
	return nil, errors.New("the driver cannot begin a transaction with options")
}

func (c *cachingConn) Close() error {
	for q, cs := range c.stmts {
		_ = cs.stmt.Close()
		delete(c.stmts, q)
	}
	return c.Conn.Close()
}

// The interfaces below pass through to the driver when it has them.

func (c *cachingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *cachingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *cachingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *cachingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// cachedRows frees its statement for the next use when closed.
type cachedRows struct {
	driver.Rows
	cs   *cachedStmt
	temp bool
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	if r.temp {
		_ = r.cs.stmt.Close()
	} else {
		r.cs.busy = false
	}
	return err
}
