package database

import (
	"bytes"
	"context"
	"sync"

	"go.mau.fi/util/dbutil"
)

// memo remembers answers to one kind of lookup on the hot path (a room's link, whether
// a room is a management room, a user's logins) until the next write to the table they
// read. Every write to those tables goes through this package, which forgets the
// memo's answers after it; this process is their only writer. (Several processes on
// one database, as planned, will need the database to tell them of writes instead.)
//
// The zero value is ready for use.
type memo[K comparable, V any] struct {
	mu sync.Mutex
	// gen counts the writes: an answer read while a write happened is not kept, so a
	// stale answer never outlives the write that made it stale.
	gen uint64
	m   map[K]V
}

// memoSize bounds one memo; past it the memo starts afresh.
const memoSize = 20000

// lookup returns the remembered answer for k, or loads it. Answers read inside a
// transaction are not kept: the transaction may still roll back. clone copies a value
// so callers never share what is remembered.
func (m *memo[K, V]) lookup(ctx context.Context, db *Database, k K, load func() (V, error), clone func(V) V) (V, error) {
	m.mu.Lock()
	v, ok := m.m[k]
	gen := m.gen
	m.mu.Unlock()
	if ok {
		return clone(v), nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	if _, inTxn := db.Execable(ctx).(dbutil.Transaction); inTxn {
		return v, nil
	}
	m.mu.Lock()
	if m.gen == gen {
		if m.m == nil || len(m.m) >= memoSize {
			m.m = make(map[K]V)
		}
		m.m[k] = clone(v)
	}
	m.mu.Unlock()
	return v, nil
}

// forget drops every answer; called after each write to the tables the memo reads.
func (m *memo[K, V]) forget() {
	m.mu.Lock()
	m.gen++
	clear(m.m)
	m.mu.Unlock()
}

// memos are the Database's remembered lookups.
type memos struct {
	room       memo[string, *RoomRow]
	chatRooms  memo[[3]string, []*RoomRow]
	management memo[string, string]
	userLogins memo[string, []*LoginRow]
}

// forgetRooms is called after every write to the room table.
func (db *Database) forgetRooms() {
	db.memos.room.forget()
	db.memos.chatRooms.forget()
}

// forgetLogins is called after every write to the login table.
func (db *Database) forgetLogins() { db.memos.userLogins.forget() }

func cloneRoom(r *RoomRow) *RoomRow {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

func cloneRooms(rs []*RoomRow) []*RoomRow {
	if rs == nil {
		return nil
	}
	out := make([]*RoomRow, len(rs))
	for i, r := range rs {
		out[i] = cloneRoom(r)
	}
	return out
}

func cloneLogins(ls []*LoginRow) []*LoginRow {
	if ls == nil {
		return nil
	}
	out := make([]*LoginRow, len(ls))
	for i, l := range ls {
		c := *l
		c.Metadata = bytes.Clone(l.Metadata)
		out[i] = &c
	}
	return out
}

func same[V any](v V) V { return v }
