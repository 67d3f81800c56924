package ircconn

import "bytes"

// Lines another connection of the same program already receives (every puppet in a
// channel gets each of the channel's lines, and the bridge's bot gets them too) are
// recognised on the raw bytes and dropped before they are parsed, copied or queued:
// with hundreds of connections in one channel that is most of the work a line costs.

// channelText looks at a raw line without parsing it and reports whether it is text
// (PRIVMSG, NOTICE or TAGMSG) to a channel, with its sender's nick and the channel. It
// answers false for anything it is not sure of, so such lines take the full path.
func channelText(raw []byte, chantypes string) (nick, channel []byte, ok bool) {
	rest := raw
	if len(rest) > 0 && rest[0] == '@' {
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			return nil, nil, false
		}
		rest = rest[i+1:]
	}
	rest = bytes.TrimLeft(rest, " ")
	if len(rest) == 0 || rest[0] != ':' {
		return nil, nil, false // no source: not a user's line
	}
	source, rest, found := bytes.Cut(rest[1:], []byte{' '})
	if !found {
		return nil, nil, false
	}
	nick = source
	if i := bytes.IndexAny(nick, "!@"); i >= 0 {
		nick = nick[:i]
	}
	rest = bytes.TrimLeft(rest, " ")
	command, rest, found := bytes.Cut(rest, []byte{' '})
	if !found || !isTextCommand(command) {
		return nil, nil, false
	}
	rest = bytes.TrimLeft(rest, " ")
	channel, _, _ = bytes.Cut(rest, []byte{' '})
	if len(channel) < 2 || channel[0] == ':' || !isChanType(channel[0], chantypes) {
		return nil, nil, false
	}
	return nick, channel, len(nick) > 0
}

func isTextCommand(cmd []byte) bool {
	switch string(cmd) { // no allocation: the compiler compares in place
	case "PRIVMSG", "NOTICE", "TAGMSG":
		return true
	}
	return false
}

func isChanType(b byte, chantypes string) bool {
	for i := 0; i < len(chantypes); i++ {
		if chantypes[i] == b {
			return true
		}
	}
	return false
}

// mayBeNick says whether nick could be own under any casemapping the Conn knows, when
// told cheaply: under ascii and the RFC 1459 mappings folding keeps every byte's place,
// and their loosest form (RFC 1459 with ^ and ~) equates all they equate; for nicks
// with non-ASCII bytes (rfc7613) it answers true, so the full comparison decides.
func mayBeNick(nick []byte, own string) bool {
	if len(nick) != len(own) {
		return hasNonASCII(nick) || hasNonASCII(own)
	}
	for i := 0; i < len(nick); i++ {
		a, b := nick[i], own[i]
		if a >= 0x80 || b >= 0x80 {
			return true
		}
		if looseFold(a) != looseFold(b) {
			return false
		}
	}
	return true
}

func looseFold(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	case c == '[' || c == ']' || c == '\\' || c == '^':
		return c + ('{' - '[')
	}
	return c
}

func hasNonASCII[T string | []byte](b T) bool {
	for i := 0; i < len(b); i++ {
		if b[i] >= 0x80 {
			return true
		}
	}
	return false
}

// skipLine says whether the read loop may drop raw unparsed: it is someone else's
// text to a channel and the Conn's SkipChannelText agrees for that channel.
func (s *session) skipLine(raw []byte) bool {
	skip := s.c.cfg.SkipChannelText
	if skip == nil || !s.registered {
		return false
	}
	nick, channel, ok := channelText(raw, s.chantypes)
	if !ok || mayBeNick(nick, s.c.Nick()) {
		return false
	}
	return skip(channel)
}
