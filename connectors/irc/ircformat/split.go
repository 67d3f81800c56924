package ircformat

import (
	"strings"
	"unicode/utf8"
)

// ircLineMax is the IRC line limit, CR LF included (RFC 1459 / 2812).
const ircLineMax = 512

// defaultHostmaskLen is assumed for the source prefix when the caller does
// not know the length of its own nick!user@host.
const defaultHostmaskLen = 63

// MaxMessageBytes returns how many bytes of message text fit in one IRC
// line as relayed by the server to other clients:
//
//	:nick!user@host PRIVMSG target :text\r\n
//
// must stay within 512 bytes. nickUserHostLen is the length of
// "nick!user@host" as the server will show it; when it is 0 (or negative)
// 63 bytes are assumed. The result is never negative.
func MaxMessageBytes(nickUserHostLen int, target string) int {
	if nickUserHostLen <= 0 {
		nickUserHostLen = defaultHostmaskLen
	}
	overhead := len(":") + nickUserHostLen + len(" PRIVMSG ") + len(target) + len(" :") + len("\r\n")
	if n := ircLineMax - overhead; n > 0 {
		return n
	}
	return 0
}

const (
	itemRune = iota
	itemSpace
	itemCode
)

type item struct {
	start, end int
	kind       uint8
	st         style // style after the item
}

// SplitLines splits text into IRC message lines of at most maxBytes bytes
// each.
//
// The text is first split at line breaks ("\n", "\r\n" or a lone "\r", none
// of which may appear in an IRC message). Lines without any visible
// character other than spaces are dropped. Each remaining line that is too
// long is cut, on a UTF-8 rune boundary, at the last space that fits (the
// spaces at the cut are dropped), or inside a word when the word alone is
// longer than the limit. Formatting active at a cut is closed with \x0f at
// the end of the piece and reopened at the start of the next, so that every
// piece renders on its own; those codes count toward the limit. Invalid
// UTF-8 is replaced with U+FFFD first.
//
// No piece is ever longer than maxBytes. When the limit is so small that
// the reopening codes and the next character do not fit together, the
// character is sent without its formatting; a character longer than
// maxBytes itself is replaced with "?". maxBytes <= 0 yields nil.
func SplitLines(text string, maxBytes int) []string {
	if maxBytes <= 0 {
		return nil
	}
	text = sanitizeUTF8(text)
	var out []string
	var items []item
	for text != "" {
		var line string
		i := strings.IndexAny(text, "\r\n")
		if i < 0 {
			line, text = text, ""
		} else {
			line = text[:i]
			if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
				i++
			}
			text = text[i+1:]
		}
		if line == "" {
			continue
		}
		if len(line) <= maxBytes {
			if hasVisible(line) {
				out = append(out, line)
			}
			continue
		}
		items = tokenize(line, items[:0])
		out = splitLine(line, items, maxBytes, out)
	}
	return out
}

// hasVisible reports whether the IRC line shows anything but spaces.
func hasVisible(line string) bool {
	var st style
	for i := 0; i < len(line); {
		switch c := line[i]; {
		case isControl(c):
			i, st = parseCode(line, i, st)
		case c == ' ':
			i++
		default:
			return true
		}
	}
	return false
}

// tokenize appends the runes and codes of line to items.
func tokenize(line string, items []item) []item {
	var st style
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case isControl(c):
			end, nst := parseCode(line, i, st)
			st = nst
			items = append(items, item{start: i, end: end, kind: itemCode, st: st})
			i = end
		case c == ' ':
			items = append(items, item{start: i, end: i + 1, kind: itemSpace, st: st})
			i++
		default:
			_, size := utf8.DecodeRuneInString(line[i:])
			items = append(items, item{start: i, end: i + size, kind: itemRune, st: st})
			i += size
		}
	}
	return items
}

// splitLine cuts one tokenized line into pieces of at most max bytes.
func splitLine(line string, items []item, max int, out []string) []string {
	n := len(items)
	lastRune := -1
	for k := n - 1; k >= 0; k-- {
		if items[k].kind != itemCode {
			lastRune = k
			break
		}
	}
	var cur style // formatting in effect at items[i]
	spaceCut := false
	for i := 0; ; {
		// Codes at the start of a piece are folded into the reopening
		// prefix; spaces after a cut at a space are dropped.
		for i < n && (items[i].kind == itemCode || (spaceCut && items[i].kind == itemSpace)) {
			if items[i].kind == itemCode {
				cur = items[i].st
			}
			i++
		}
		if i >= n {
			return out
		}
		prefix := encodeStyle(cur, line[items[i].start:])
		size := len(prefix)
		st := cur
		cand := -1 // best cut at the start of a run of spaces
		seenWord, prevSpace := false, false
		j := i
		for ; j < n; j++ {
			it := items[j]
			nst := st
			if it.kind == itemCode {
				nst = it.st
			}
			closing := 0
			if j < lastRune && !nst.isZero() {
				closing = 1
			}
			if size+(it.end-it.start)+closing > max {
				break
			}
			if it.kind == itemSpace && seenWord && !prevSpace {
				cand = j
			}
			size += it.end - it.start
			st = nst
			switch it.kind {
			case itemRune:
				seenWord, prevSpace = true, false
			case itemSpace:
				prevSpace = true
			}
		}
		if j >= n {
			out = appendPiece(out, prefix+line[items[i].start:])
			return out
		}
		var c int
		switch {
		case items[j].kind == itemSpace && seenWord && !prevSpace:
			c, spaceCut = j, true
		case cand > i:
			c, spaceCut = cand, true
		case j > i:
			c, spaceCut = j, false
		default:
			// Not even one character fits after the reopening codes.
			r := line[items[i].start:items[i].end]
			if len(r) > max {
				r = "?"
			}
			out = appendPiece(out, r)
			i++
			spaceCut = false
			continue
		}
		end := cur
		for k := i; k < c; k++ {
			if items[k].kind == itemCode {
				end = items[k].st
			}
		}
		piece := prefix + line[items[i].start:items[c-1].end]
		if c-1 < lastRune && !end.isZero() {
			piece += string(codeReset)
		}
		out = appendPiece(out, piece)
		cur = end
		i = c
	}
}

func appendPiece(out []string, piece string) []string {
	if hasVisible(piece) {
		out = append(out, piece)
	}
	return out
}
