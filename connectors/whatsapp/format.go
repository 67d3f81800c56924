package whatsapp

import (
	"context"
	"html"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"
)

// waLineKind says which block a logical WhatsApp line belongs to.
type waLineKind int

const (
	waLinePara  waLineKind = iota // ordinary text, lines joined with <br>
	waLineQuote                   // "> text"
	waLineUL                      // "* text" or "- text"
	waLineOL                      // "1. text"
	waLinePre                     // a line holding nothing but a ``` block
)

// waChunk is a piece of a WhatsApp message: either text that may carry inline markup,
// or the raw content of a ``` block, which WhatsApp never formats further.
type waChunk struct {
	text string
	code bool
}

// waLine is one logical line: newlines inside ``` blocks do not end a line, because a
// code block is a single unit that block prefixes and inline markers cannot enter.
type waLine struct {
	kind   waLineKind
	prefix string // the block marker ("> ", "- ", "3. "), kept verbatim in the body
	number int    // the number of an ordered-list item, for <ol start>
	chunks []waChunk
}

// waConverter accumulates the outputs of one waToMatrix call. The plain body and the
// HTML are written side by side during a single left-to-right walk, so every source
// character reaches the body exactly once, in order.
type waConverter struct {
	mention   func(jidUser string) (mxid string, name string, ok bool)
	html      strings.Builder
	body      strings.Builder
	mentioned []string
	formatted bool // whether any markup or pill was emitted; plain messages stay plain
}

// waToMatrix converts a WhatsApp message to a Matrix body and HTML formatted body.
//
// body is the text as WhatsApp shows it: markers stay, but "@digits" mentions that
// mention resolves are replaced by the display name. formattedHTML is "" when the
// message has neither markup nor resolved mentions, so plain messages are sent
// without a formatted_body. mentionedUsers lists the resolved mentions' digits
// (the JID user part), each once, in order of first appearance.
func waToMatrix(text string, mention func(jidUser string) (mxid string, name string, ok bool)) (body, formattedHTML string, mentionedUsers []string) {
	c := &waConverter{mention: mention}
	lines := waParseLines(text)
	openTag := "" // the block element currently open in the HTML, if any
	for i, ln := range lines {
		if i > 0 {
			c.body.WriteByte('\n')
		}
		tag := waGroupTag(ln.kind)
		first := tag != openTag
		if first {
			if openTag != "" {
				c.html.WriteString("</" + openTag + ">")
			}
			switch tag {
			case "":
			case "ol":
				// Keep WhatsApp's numbering when a list does not start at 1.
				if ln.number != 1 {
					c.html.WriteString(`<ol start="` + strconv.Itoa(ln.number) + `">`)
				} else {
					c.html.WriteString("<ol>")
				}
			default:
				c.html.WriteString("<" + tag + ">")
			}
			openTag = tag
		}
		c.body.WriteString(ln.prefix)
		switch ln.kind {
		case waLinePara:
			// Block elements already break the line in HTML; a <br> next to one would
			// add a blank line that WhatsApp does not show.
			if i > 0 && lines[i-1].kind == waLinePara {
				c.html.WriteString("<br>")
			}
			c.chunks(ln.chunks)
		case waLineQuote:
			c.formatted = true
			if !first {
				c.html.WriteString("<br>")
			}
			c.chunks(ln.chunks)
		case waLineUL, waLineOL:
			c.formatted = true
			c.html.WriteString("<li>")
			c.chunks(ln.chunks)
			c.html.WriteString("</li>")
		case waLinePre:
			c.chunks(ln.chunks)
		}
	}
	if openTag != "" {
		c.html.WriteString("</" + openTag + ">")
	}
	if c.formatted {
		formattedHTML = c.html.String()
	}
	return c.body.String(), formattedHTML, c.mentioned
}

// waGroupTag is the HTML element that groups consecutive lines of a kind, or "" for
// kinds that are not grouped.
func waGroupTag(kind waLineKind) string {
	switch kind {
	case waLineQuote:
		return "blockquote"
	case waLineUL:
		return "ul"
	case waLineOL:
		return "ol"
	}
	return ""
}

// waParseLines splits a WhatsApp message into logical lines and recognises each
// line's block marker. Code blocks are cut out first because their content may span
// lines and must not be read as quotes, lists or inline markup.
func waParseLines(text string) []waLine {
	lines := []waLine{{}}
	for _, ch := range waSplitCodeBlocks(text) {
		last := &lines[len(lines)-1]
		if ch.code {
			last.chunks = append(last.chunks, ch)
			continue
		}
		for i, part := range strings.Split(ch.text, "\n") {
			if i > 0 {
				lines = append(lines, waLine{})
				last = &lines[len(lines)-1]
			}
			if part != "" {
				last.chunks = append(last.chunks, waChunk{text: part})
			}
		}
	}
	for i := range lines {
		waClassifyLine(&lines[i])
	}
	return lines
}

// waClassifyLine sets the kind of a line from its leading marker and strips that
// marker from the chunks. A marker only counts when something follows it, since
// WhatsApp leaves a bare "- " or "> " as text.
func waClassifyLine(ln *waLine) {
	if len(ln.chunks) == 0 {
		return
	}
	if ln.chunks[0].code {
		if len(ln.chunks) == 1 {
			ln.kind = waLinePre
		}
		return
	}
	first := ln.chunks[0].text
	var prefix string
	switch {
	case strings.HasPrefix(first, "> "):
		ln.kind, prefix = waLineQuote, "> "
	case strings.HasPrefix(first, "* "), strings.HasPrefix(first, "- "):
		ln.kind, prefix = waLineUL, first[:2]
	default:
		digits := 0
		for digits < len(first) && first[digits] >= '0' && first[digits] <= '9' {
			digits++
		}
		if digits == 0 || !strings.HasPrefix(first[digits:], ". ") {
			return
		}
		n, err := strconv.Atoi(first[:digits])
		if err != nil {
			// Too many digits to be a list number; leave the line as text.
			return
		}
		ln.kind, prefix, ln.number = waLineOL, first[:digits+2], n
	}
	rest := first[len(prefix):]
	if strings.TrimSpace(rest) == "" && len(ln.chunks) == 1 {
		ln.kind, ln.number = waLinePara, 0
		return
	}
	ln.prefix = prefix
	if rest == "" {
		ln.chunks = ln.chunks[1:]
	} else {
		ln.chunks[0].text = rest
	}
}

// waSplitCodeBlocks cuts ```…``` blocks out of the text. Fences follow looser rules
// than the inline markers because WhatsApp users put them on lines of their own
// ("```\ncode\n```"): the opening fence needs only a word boundary before it, the
// closing one a word boundary after it, and the content must not be blank.
func waSplitCodeBlocks(text string) []waChunk {
	var chunks []waChunk
	rest := text
	from := 0
	for {
		i := strings.Index(rest[from:], "```")
		if i < 0 {
			break
		}
		i += from
		end := -1
		if waLeftBoundary(rest, i) {
			end = waFenceClose(rest, i+3)
		}
		if end < 0 {
			from = i + 1
			continue
		}
		if i > 0 {
			chunks = append(chunks, waChunk{text: rest[:i]})
		}
		chunks = append(chunks, waChunk{text: rest[i+3 : end], code: true})
		rest = rest[end+3:]
		from = 0
	}
	if rest != "" {
		chunks = append(chunks, waChunk{text: rest})
	}
	return chunks
}

// waFenceClose returns the index of the ``` that closes a block whose content starts
// at from, or -1 when there is none.
func waFenceClose(s string, from int) int {
	for j := from; j < len(s); {
		k := strings.Index(s[j:], "```")
		if k < 0 {
			return -1
		}
		k += j
		if strings.TrimSpace(s[from:k]) != "" && waRightBoundary(s, k+3) {
			return k
		}
		j = k + 1
	}
	return -1
}

// chunks emits the pieces of one line.
func (c *waConverter) chunks(chunks []waChunk) {
	for _, ch := range chunks {
		if ch.code {
			c.codeBlock(ch.text)
		} else {
			c.inline(ch.text)
		}
	}
}

// codeBlock emits a ``` block. The newline right after the opening fence and the one
// right before the closing fence only put the fences on lines of their own, so they
// are not part of the code.
func (c *waConverter) codeBlock(code string) {
	c.formatted = true
	c.body.WriteString("```" + code + "```")
	code = strings.TrimPrefix(code, "\n")
	code = strings.TrimSuffix(code, "\n")
	c.html.WriteString("<pre><code>" + html.EscapeString(code) + "</code></pre>")
}

// inline emits text that may hold inline markers and mentions. Formatting markers
// recurse into their content, so nesting such as *_both_* works; inline code does not,
// because WhatsApp shows markers inside it literally.
func (c *waConverter) inline(s string) {
	plainStart := 0
	i := 0
	for i < len(s) {
		switch m := s[i]; m {
		case '*', '_', '~', '`':
			end := waInlineClose(s, i)
			if end < 0 {
				break
			}
			c.plain(s[plainStart:i])
			tag := waInlineTag(m)
			c.formatted = true
			c.body.WriteByte(m)
			c.html.WriteString("<" + tag + ">")
			if m == '`' {
				c.plain(s[i+1 : end])
			} else {
				c.inline(s[i+1 : end])
			}
			c.html.WriteString("</" + tag + ">")
			c.body.WriteByte(m)
			i = end + 1
			plainStart = i
			continue
		case '@':
			n := waMentionDigits(s, i)
			if n == 0 {
				break
			}
			digits := s[i+1 : i+1+n]
			if !c.pill(digits, s[plainStart:i]) {
				break
			}
			i += 1 + n
			plainStart = i
			continue
		}
		i++
	}
	c.plain(s[plainStart:])
}

// pill emits a mention pill for digits after flushing the plain text before it, and
// reports false (emitting nothing) when the number is not a known user.
func (c *waConverter) pill(digits, before string) bool {
	if c.mention == nil {
		return false
	}
	mxid, name, ok := c.mention(digits)
	if !ok || mxid == "" {
		return false
	}
	if name == "" {
		// A pill with no text would be invisible; the MXID is the next best thing.
		name = mxid
	}
	c.plain(before)
	c.formatted = true
	c.html.WriteString(`<a href="` + html.EscapeString(id.UserID(mxid).URI().MatrixToURL()) + `">` + html.EscapeString(name) + `</a>`)
	c.body.WriteString(name)
	for _, seen := range c.mentioned {
		if seen == digits {
			return true
		}
	}
	c.mentioned = append(c.mentioned, digits)
	return true
}

// plain emits text without markup: raw into the body, escaped into the HTML.
func (c *waConverter) plain(s string) {
	c.body.WriteString(s)
	c.html.WriteString(html.EscapeString(s))
}

// waInlineTag maps an inline WhatsApp marker to its HTML element.
func waInlineTag(marker byte) string {
	switch marker {
	case '*':
		return "strong"
	case '_':
		return "em"
	case '~':
		return "del"
	}
	return "code"
}

// waInlineClose returns the index of the marker closing the one at s[i], or -1 when
// s[i] is not an opening marker or has no match. This is what keeps snake_case_words
// and 2*3*4 literal: an opener must follow a boundary and precede a non-space, a
// closer must follow a non-space and precede a boundary.
func waInlineClose(s string, i int) int {
	if !waLeftBoundary(s, i) || i+1 >= len(s) {
		return -1
	}
	if next, _ := utf8.DecodeRuneInString(s[i+1:]); unicode.IsSpace(next) {
		return -1
	}
	m := s[i]
	for j := i + 2; j < len(s); j++ {
		if s[j] != m {
			continue
		}
		if prev, _ := utf8.DecodeLastRuneInString(s[:j]); unicode.IsSpace(prev) {
			continue
		}
		if waRightBoundary(s, j+1) {
			return j
		}
	}
	return -1
}

// waMentionDigits returns how many digits follow the '@' at s[i], or 0 when it is not
// a mention. An '@' glued to a word (as in an e-mail address) is not a mention.
func waMentionDigits(s string, i int) int {
	if i > 0 {
		if prev, _ := utf8.DecodeLastRuneInString(s[:i]); unicode.IsLetter(prev) || unicode.IsDigit(prev) {
			return 0
		}
	}
	n := 0
	for i+1+n < len(s) && s[i+1+n] >= '0' && s[i+1+n] <= '9' {
		n++
	}
	return n
}

// waLeftBoundary reports whether position i is at the start of the text or right
// after whitespace or punctuation, where WhatsApp lets a marker open.
func waLeftBoundary(s string, i int) bool {
	if i == 0 {
		return true
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return unicode.IsSpace(r) || waIsPunct(r)
}

// waRightBoundary reports whether position i is at the end of the text or at
// whitespace or punctuation, where WhatsApp lets a marker close.
func waRightBoundary(s string, i int) bool {
	if i >= len(s) {
		return true
	}
	r, _ := utf8.DecodeRuneInString(s[i:])
	return unicode.IsSpace(r) || waIsPunct(r)
}

// waIsPunct counts symbols as punctuation too, since '~' and '`' are symbols in
// Unicode and must still separate nested markers like ~`x`~.
func waIsPunct(r rune) bool {
	return unicode.IsPunct(r) || unicode.IsSymbol(r)
}

// waStar stands for a literal '*' while mautrix's HTML parser runs. The parser writes
// unordered-list bullets as "* " with no way to configure them, so every '*' that we
// or the message produce is hidden behind this placeholder; afterwards each remaining
// real '*' is a bullet and becomes '-'. NUL works because the HTML parser drops or
// replaces NUL in text, and waLiteral strips it from attribute values.
const waStar = "\x00"

// waLiteral prepares raw message text or an attribute value for the parser output by
// hiding its '*' characters (see waStar).
func waLiteral(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\x00", ""), "*", waStar)
}

// matrixToWA converts a Matrix message to WhatsApp text. Without formattedHTML the
// body is already what WhatsApp should show. Pills to users that mention resolves
// become "@<jidUser>" and are returned, each once, in order, so the caller can list
// them as WhatsApp mentions; other pills fall back to their text.
func matrixToWA(formattedHTML, body string, mention func(mxid string) (jidUser string, ok bool)) (text string, mentionedJIDUsers []string) {
	if formattedHTML == "" {
		return body, nil
	}
	// wrap builds a converter that surrounds text with a WhatsApp marker. It leaves the
	// text bare inside code, where WhatsApp would show the marker literally, and inside
	// an element of the same kind (<b><strong>x</strong></b>), where doubled markers
	// would not format at all.
	wrap := func(marker string, same ...string) format.TextConverter {
		return func(s string, ctx format.Context) string {
			if strings.TrimSpace(s) == "" {
				return s
			}
			// The last tag is the element being converted; only ancestors matter.
			for _, tag := range ctx.TagStack[:max(len(ctx.TagStack)-1, 0)] {
				if tag == "pre" || tag == "code" || tag == "tt" || slices.Contains(same, tag) {
					return s
				}
			}
			return marker + s + marker
		}
	}
	parser := &format.HTMLParser{
		TabsToSpaces:   4,
		Newline:        "\n",
		HorizontalLine: "---",
		TextConverter: func(s string, _ format.Context) string {
			return waLiteral(s)
		},
		BoldConverter:          wrap(waStar, "b", "strong"),
		ItalicConverter:        wrap("_", "i", "em"),
		StrikethroughConverter: wrap("~", "s", "del", "strike"),
		MonospaceConverter:     wrap("`"),
		MonospaceBlockConverter: func(code, _ string, _ format.Context) string {
			// The language has no WhatsApp equivalent. The trailing newline Matrix
			// clients put before </code> would show as an empty last line.
			return "```" + strings.TrimSuffix(code, "\n") + "```"
		},
		PillConverter: func(displayname, mxid, eventID string, ctx format.Context) string {
			if strings.HasPrefix(mxid, "@") && eventID == "" {
				if mention != nil {
					if jidUser, ok := mention(mxid); ok {
						for _, seen := range mentionedJIDUsers {
							if seen == jidUser {
								return "@" + waLiteral(jidUser)
							}
						}
						mentionedJIDUsers = append(mentionedJIDUsers, jidUser)
						return "@" + waLiteral(jidUser)
					}
				}
				return displayname
			}
			// Room, alias and event links: mautrix's default already renders them as
			// something readable outside Matrix.
			return format.DefaultPillConverter(displayname, waLiteral(mxid), waLiteral(eventID), ctx)
		},
		LinkConverter: func(text, href string, _ format.Context) string {
			href = waLiteral(href)
			switch text {
			case "", href:
				return href
			case strings.TrimPrefix(href, "mailto:"), strings.TrimPrefix(href, "https://"), strings.TrimPrefix(href, "http://"):
				// The text is the link minus its scheme; WhatsApp links it by itself.
				return text
			}
			return text + " (" + href + ")"
		},
		ImageConverter: func(_, alt, _, _, _ string, _ bool) string {
			return waLiteral(alt)
		},
	}
	out := parser.Parse(waDropReplyFallback(formattedHTML), format.NewContext(context.Background()))
	out = strings.ReplaceAll(out, "*", "-")
	out = strings.ReplaceAll(out, waStar, "*")
	return out, mentionedJIDUsers
}

// waDropReplyFallback removes <mx-reply> elements. They quote the replied-to message
// for clients without reply support; WhatsApp shows replies natively, and the
// parser would otherwise render the fallback as text.
func waDropReplyFallback(s string) string {
	const open, end = "<mx-reply>", "</mx-reply>"
	for {
		i := strings.Index(s, open)
		if i < 0 {
			return s
		}
		j := strings.Index(s[i:], end)
		if j < 0 {
			return s
		}
		s = s[:i] + s[i+j+len(end):]
	}
}
