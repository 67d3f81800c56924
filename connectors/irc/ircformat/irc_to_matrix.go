package ircformat

import (
	"html"
	"strings"
)

// HTML tags used for IRC formatting, in the order they are opened.
const (
	tagFont = iota
	tagStrong
	tagEm
	tagU
	tagDel
	tagCode
	numTags
)

var tagNames = [numTags]string{"font", "strong", "em", "u", "del", "code"}

// wanted returns the set of tags (as a bit mask) that render st.
// Reverse video has no Matrix equivalent and is ignored.
func wanted(st style) uint8 {
	var m uint8
	if st.fg != "" || st.bg != "" {
		m |= 1 << tagFont
	}
	if st.bold {
		m |= 1 << tagStrong
	}
	if st.italic {
		m |= 1 << tagEm
	}
	if st.underline {
		m |= 1 << tagU
	}
	if st.strike {
		m |= 1 << tagDel
	}
	if st.mono {
		m |= 1 << tagCode
	}
	return m
}

// htmlWriter keeps a stack of open tags and reconciles it with the wanted
// style before each text run, closing and reopening tags so that the output
// is always properly nested however the IRC toggles overlap.
type htmlWriter struct {
	b        strings.Builder
	stack    []int
	fontFG   string
	fontBG   string
	anyStyle bool

	off       int  // bytes of plain text written so far
	lineStart bool // at the start of a line of text
	prevSpace bool // the last character written was a space
}

func (w *htmlWriter) sync(st style) {
	want := wanted(st)
	// Keep the longest bottom part of the stack that is still wanted
	// (for the font tag: with the same colours); close the rest.
	keep := 0
	for keep < len(w.stack) {
		t := w.stack[keep]
		if want&(1<<t) == 0 || (t == tagFont && (w.fontFG != st.fg || w.fontBG != st.bg)) {
			break
		}
		keep++
	}
	var open uint8
	for _, t := range w.stack[:keep] {
		open |= 1 << t
	}
	for len(w.stack) > keep {
		t := w.stack[len(w.stack)-1]
		w.stack = w.stack[:len(w.stack)-1]
		w.b.WriteString("</" + tagNames[t] + ">")
	}
	for t := 0; t < numTags; t++ {
		if want&(1<<t) == 0 || open&(1<<t) != 0 {
			continue
		}
		if t == tagFont {
			w.b.WriteString("<font")
			if st.fg != "" {
				w.b.WriteString(` data-mx-color="` + colorHex(st.fg) + `"`)
			}
			if st.bg != "" {
				w.b.WriteString(` data-mx-bg-color="` + colorHex(st.bg) + `"`)
			}
			w.b.WriteString(">")
			w.fontFG, w.fontBG = st.fg, st.bg
		} else {
			w.b.WriteString("<" + tagNames[t] + ">")
		}
		w.stack = append(w.stack, t)
	}
	if want != 0 {
		w.anyStyle = true
	}
}

// text writes HTML-escaped text. Spaces that HTML would collapse or trim
// (a space at the start or end of a line, or following another space)
// are written as &nbsp; so that the message keeps its spacing; trailFrom is
// the offset in the plain body from which spaces are trailing ones.
func (w *htmlWriter) text(s string, trailFrom int) {
	start := 0
	flush := func(i int) {
		if start < i {
			w.b.WriteString(html.EscapeString(s[start:i]))
		}
		start = i + 1
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\n':
			flush(i)
			w.b.WriteString("<br>")
			w.lineStart, w.prevSpace = true, false
			continue
		case ' ':
			if w.lineStart || w.prevSpace || w.off+i >= trailFrom || (i+1 < len(s) && s[i+1] == '\n') {
				flush(i)
				w.b.WriteString("&nbsp;")
			}
			w.lineStart, w.prevSpace = false, true
			continue
		}
		w.lineStart, w.prevSpace = false, false
	}
	flush(len(s))
	w.off += len(s)
}

// IRCToMatrix converts an IRC message (the trailing parameter of a PRIVMSG
// or NOTICE) into Matrix message content. body is the text with every
// formatting code removed. formattedBody is the org.matrix.custom.html
// rendering of the formatting; it is "" when no text of the line is
// formatted, in which case the caller should send body alone.
//
// Bold, italic, underline, strikethrough and monospace become <strong>,
// <em>, <u>, <del> and <code>; colours (\x03 with mIRC numbers 0–98, \x04
// with hex) become <font data-mx-color data-mx-bg-color>; reverse video is
// dropped. The HTML is always properly nested. Bytes that are not valid
// UTF-8 are replaced with U+FFFD, one per byte. Line feeds, which IRC lines
// cannot normally contain, become <br>.
func IRCToMatrix(line string) (body, formattedBody string) {
	line = sanitizeUTF8(line)
	if strings.IndexAny(line, controlCodes) < 0 {
		return line, ""
	}
	body = strip(line)
	trailFrom := len(strings.TrimRight(body, " "))
	w := htmlWriter{lineStart: true}
	w.b.Grow(len(line) * 2)
	var st style
	for i := 0; i < len(line); {
		if isControl(line[i]) {
			i, st = parseCode(line, i, st)
			continue
		}
		j := i + 1
		for j < len(line) && !isControl(line[j]) {
			j++
		}
		w.sync(st)
		w.text(line[i:j], trailFrom)
		i = j
	}
	if !w.anyStyle {
		return body, ""
	}
	w.sync(style{})
	return body, w.b.String()
}
