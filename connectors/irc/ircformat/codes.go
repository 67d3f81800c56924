// Package ircformat converts between IRC message text, which carries mIRC
// formatting control codes, and Matrix message content (a plain body plus an
// optional org.matrix.custom.html formatted body). It also splits outgoing
// text into IRC-sized lines without breaking formatting or UTF-8.
//
// Recognised IRC codes: bold \x02, colour \x03FG[,BG], hex colour
// \x04RRGGBB[,RRGGBB], reset \x0f, monospace \x11, reverse \x16, italic \x1d,
// strikethrough \x1e and underline \x1f. Colour parsing follows
// https://modern.ircdocs.horse/formatting.html, as github.com/ergochat/irc-go's
// ircfmt does; ircfmt itself is not used for parsing because v0.6.0 knows
// nothing of the \x04 hex colour code and does not report byte offsets, which
// the splitter needs.
package ircformat

import (
	"strings"
	"unicode/utf8"
)

const (
	codeBold      = '\x02'
	codeColor     = '\x03'
	codeHexColor  = '\x04'
	codeReset     = '\x0f'
	codeMonospace = '\x11'
	codeReverse   = '\x16'
	codeItalic    = '\x1d'
	codeStrike    = '\x1e'
	codeUnderline = '\x1f'
)

// controlCodes holds every byte that starts an IRC formatting code.
const controlCodes = "\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f"

func isControl(b byte) bool {
	switch b {
	case codeBold, codeColor, codeHexColor, codeReset, codeMonospace, codeReverse, codeItalic, codeStrike, codeUnderline:
		return true
	}
	return false
}

// style is the formatting state in effect at some point of an IRC line.
// Colours are "" (unset/default), a two-digit mIRC colour number ("00".."98")
// or a lower-case "#rrggbb" hex colour.
type style struct {
	fg, bg                                         string
	bold, italic, underline, strike, mono, reverse bool
}

func (s style) isZero() bool { return s == style{} }

// toggles returns the toggle codes that are on in s, in a fixed order.
func (s style) toggles() string {
	var b []byte
	if s.bold {
		b = append(b, codeBold)
	}
	if s.italic {
		b = append(b, codeItalic)
	}
	if s.underline {
		b = append(b, codeUnderline)
	}
	if s.strike {
		b = append(b, codeStrike)
	}
	if s.mono {
		b = append(b, codeMonospace)
	}
	if s.reverse {
		b = append(b, codeReverse)
	}
	return string(b)
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

func isHexDigit(b byte) bool {
	return isDigit(b) || ('a' <= b && b <= 'f') || ('A' <= b && b <= 'F')
}

// digitsAt returns how many (at most two) ASCII digits start s[i:].
func digitsAt(s string, i int) int {
	n := 0
	for n < 2 && i+n < len(s) && isDigit(s[i+n]) {
		n++
	}
	return n
}

// hexAt reports whether six hex digits start s[i:].
func hexAt(s string, i int) bool {
	if i+6 > len(s) {
		return false
	}
	for k := i; k < i+6; k++ {
		if !isHexDigit(s[k]) {
			return false
		}
	}
	return true
}

// mircColor normalises a one or two digit colour number to two digits;
// 99 ("default") becomes the unset colour "".
func mircColor(d string) string {
	if len(d) == 1 {
		d = "0" + d
	}
	if d == "99" {
		return ""
	}
	return d
}

// parseCode applies the control code starting at s[i] to st and returns the
// index just past the code and the new style. s[i] must satisfy isControl.
func parseCode(s string, i int, st style) (int, style) {
	c := s[i]
	i++
	switch c {
	case codeBold:
		st.bold = !st.bold
	case codeItalic:
		st.italic = !st.italic
	case codeUnderline:
		st.underline = !st.underline
	case codeStrike:
		st.strike = !st.strike
	case codeMonospace:
		st.mono = !st.mono
	case codeReverse:
		st.reverse = !st.reverse
	case codeReset:
		st = style{}
	case codeColor:
		n := digitsAt(s, i)
		if n == 0 {
			st.fg, st.bg = "", ""
			return i, st
		}
		st.fg = mircColor(s[i : i+n])
		i += n
		if i+1 < len(s) && s[i] == ',' {
			if m := digitsAt(s, i+1); m > 0 {
				st.bg = mircColor(s[i+1 : i+1+m])
				i += 1 + m
			}
		}
	case codeHexColor:
		if !hexAt(s, i) {
			st.fg, st.bg = "", ""
			return i, st
		}
		st.fg = "#" + strings.ToLower(s[i:i+6])
		i += 6
		if i < len(s) && s[i] == ',' && hexAt(s, i+1) {
			st.bg = "#" + strings.ToLower(s[i+1:i+7])
			i += 7
		}
	}
	return i, st
}

// strip removes every formatting code from an IRC line.
func strip(s string) string {
	if strings.IndexAny(s, controlCodes) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	var st style
	for i := 0; i < len(s); {
		if isControl(s[i]) {
			i, st = parseCode(s, i, st)
			continue
		}
		j := i + 1
		for j < len(s) && !isControl(s[j]) {
			j++
		}
		b.WriteString(s[i:j])
		i = j
	}
	return b.String()
}

// encodeStyle returns the shortest reasonable code sequence that switches a
// line from the unformatted state to st, given that next is the text that
// will follow it (so that a following digit or comma is not swallowed into a
// colour code).
func encodeStyle(st style, next string) string {
	if st.isZero() {
		return ""
	}
	return transition(style{}, st, next)
}

// transition returns codes that change the formatting from `from` to `to`,
// followed by the text next.
func transition(from, to style, next string) string {
	if from == to {
		return ""
	}
	if to.isZero() {
		// Reset is one byte; prefer a single toggle (or a bare colour
		// code) when that is all there is to undo, so that simple text
		// round-trips byte for byte.
		t := from
		t.fg, t.bg = "", ""
		colored := from.fg != "" || from.bg != ""
		switch tog := t.toggles(); {
		case !colored && len(tog) == 1:
			return tog
		case colored && tog == "" && (next == "" || (!isDigit(next[0]) && next[0] != ',')):
			return string(codeColor)
		}
		return string(codeReset)
	}
	var b strings.Builder
	colour := ""
	if from.fg != to.fg || from.bg != to.bg {
		switch {
		case to.fg == "" && to.bg == "":
			colour = string(codeColor)
		case from.bg != "" && to.bg == "":
			// A colour code cannot unset just the background: reset first.
			colour = string(codeColor) + colorCode(to.fg, to.bg)
		default:
			colour = colorCode(to.fg, to.bg)
		}
	}
	b.WriteString(colour)
	tog := 0
	flip := func(on1, on2 bool, c byte) {
		if on1 != on2 {
			b.WriteByte(c)
			tog++
		}
	}
	flip(from.bold, to.bold, codeBold)
	flip(from.italic, to.italic, codeItalic)
	flip(from.underline, to.underline, codeUnderline)
	flip(from.strike, to.strike, codeStrike)
	flip(from.mono, to.mono, codeMonospace)
	flip(from.reverse, to.reverse, codeReverse)
	if colour != "" && tog == 0 && needsGuard(colour, next) {
		// An empty bold toggle pair separates the colour code from text
		// that would otherwise be read as part of it.
		b.WriteString("\x02\x02")
	}
	return b.String()
}

// needsGuard reports whether text next, written directly after the colour
// code sequence code, would be parsed as part of the code.
func needsGuard(code, next string) bool {
	if next == "" {
		return false
	}
	last := code[strings.LastIndexAny(code, "\x03\x04"):]
	switch {
	case last == "\x03":
		return isDigit(next[0])
	case last == "\x04":
		return isHexDigit(next[0])
	case strings.Contains(last, ","):
		// Background present: the code is complete (two digits or six hex).
		return false
	default:
		return next[0] == ',' && len(next) > 1 && isHexDigit(next[1])
	}
}

// colorCode returns a colour code setting foreground fg and background bg,
// at least one of which is set.
func colorCode(fg, bg string) string {
	if !strings.HasPrefix(fg, "#") && !strings.HasPrefix(bg, "#") {
		if fg == "" {
			fg = "99"
		}
		if bg == "" {
			return "\x03" + fg
		}
		return "\x03" + fg + "," + bg
	}
	if fg == "" {
		// There is no "default" in the hex form: use the mIRC colour with
		// that value, or the nearest one.
		code := exactMIRC(bg)
		if code == "" {
			code = nearestMIRC(bg)
		}
		return "\x0399," + code
	}
	code := "\x04" + colorHex(fg)[1:]
	if bg != "" {
		code += "," + colorHex(bg)[1:]
	}
	return code
}

// sanitizeUTF8 replaces every byte that is not part of a valid UTF-8
// sequence with U+FFFD (one replacement per bad byte, so nothing vanishes).
func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
