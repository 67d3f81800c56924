package irc

import (
	"regexp"
	"time"

	"github.com/passerelle/passerelle/bridge"
)

// splitQuit is a user who quit in a netsplit: their ghost stays until the grace ends,
// and if they rejoin in time nothing is bridged at all.
type splitQuit struct {
	nick     string
	channels map[string]string // folded → name, not yet rejoined
	timer    *time.Timer
}

// netsplitReason matches the QUIT reason servers give in a split: "irc.a.net irc.b.net".
var netsplitReason = regexp.MustCompile(`^[\w.-]+\.[\w-]+ [\w.-]+\.[\w-]+$`)

// isNetsplit says whether a QUIT reason is a netsplit's.
func isNetsplit(reason string) bool { return netsplitReason.MatchString(reason) }

// holdSplit delays the leaves of a netsplit quit.
func (n *network) holdSplit(nick string, channels []string) {
	folded := n.fold(nick)
	n.mu.Lock()
	defer n.mu.Unlock()
	sq := n.splits[folded]
	if sq == nil {
		sq = &splitQuit{nick: nick, channels: map[string]string{}}
		n.splits[folded] = sq
	}
	for _, c := range channels {
		sq.channels[n.fold(c)] = c
	}
	if sq.timer != nil {
		sq.timer.Stop()
	}
	sq.timer = time.AfterFunc(n.cfg.NetsplitGrace, func() { n.endSplit(folded) })
}

// endSplit bridges the leaves of those who did not come back.
func (n *network) endSplit(folded string) {
	n.mu.Lock()
	sq := n.splits[folded]
	delete(n.splits, folded)
	n.mu.Unlock()
	if sq == nil || n.c.runCtx == nil {
		return
	}
	ctx := n.c.runCtx
	for _, channel := range sq.channels {
		n.queue(ctx, &bridge.RemoteEvent{Type: bridge.RemoteLeave, Chat: n.channelKey(channel),
			Sender: bridge.Sender{RemoteID: n.userID(sq.nick), Name: sq.nick}, Reason: "netsplit",
			Timestamp: time.Now()})
	}
}

// rejoinedAfterSplit says whether a JOIN is someone coming back from a split (and so
// not to be bridged).
func (n *network) rejoinedAfterSplit(nick, channel string) bool {
	folded := n.fold(nick)
	n.mu.Lock()
	defer n.mu.Unlock()
	sq := n.splits[folded]
	if sq == nil {
		return false
	}
	key := n.fold(channel)
	if _, ok := sq.channels[key]; !ok {
		return false
	}
	delete(sq.channels, key)
	if len(sq.channels) == 0 {
		sq.timer.Stop()
		delete(n.splits, folded)
	}
	return true
}

// flushSplits ends every pending split now (shutdown).
func (n *network) flushSplits() {
	n.mu.Lock()
	var keys []string
	for k, sq := range n.splits {
		sq.timer.Stop()
		keys = append(keys, k)
	}
	n.mu.Unlock()
	for _, k := range keys {
		n.endSplit(k)
	}
}
