package ircformat

import (
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"maunium.net/go/mautrix/id"
)

// Options tunes MatrixToIRCWith.
type Options struct {
	// MentionName returns the text that replaces a user mention pill
	// (<a href="https://matrix.to/#/@user:server">Display name</a>), for
	// example the IRC nick of a bridged user. userID is the mentioned Matrix
	// user ID, displayName the pill's text. When nil, or when it returns "",
	// the display name is used (the user ID when the pill has no text).
	MentionName func(userID string, displayName string) string
}

// MatrixToIRC converts Matrix message content into IRC text with the default
// Options. See MatrixToIRCWith.
func MatrixToIRC(body, formattedBody string) string {
	return MatrixToIRCWith(body, formattedBody, Options{})
}

// MatrixToIRCWith converts Matrix message content into IRC text: one or
// more lines separated by "\n" carrying mIRC formatting codes. Each line
// closes its own formatting (IRC clients reset at the end of a line) and the
// next line reopens what is still in effect. The result may be longer than
// an IRC line: pass it through SplitLines before sending.
//
// When formattedBody is "" the body is returned as is (with invalid UTF-8
// replaced by U+FFFD). Otherwise the HTML is rendered: strong/b, em/i, u,
// del/s/strike and inline code map to the IRC toggles; font and span colours
// map to the nearest of the 16 standard mIRC colours; links become
// "text (url)" unless the text is the URL; user pills become the name given
// by opts.MentionName; <br> and block elements start new lines, list items
// get "• " or "1. ", quoted lines get "> "; <pre> keeps its whitespace and
// is set monospace; non-breaking spaces become spaces; <mx-reply> is dropped.
// Formatting codes and other control characters found in the HTML text
// itself are removed so that they cannot leak formatting or CTCP.
func MatrixToIRCWith(body, formattedBody string, opts Options) string {
	if formattedBody == "" {
		return sanitizeUTF8(body)
	}
	root, err := html.Parse(strings.NewReader(sanitizeUTF8(formattedBody)))
	if err != nil {
		return sanitizeUTF8(body)
	}
	w := ircWriter{opts: opts}
	w.out.Grow(len(formattedBody))
	w.walkChildren(root, style{})
	w.endLine()
	return strings.Trim(w.out.String(), "\n")
}

// linePrefix is text written at the start of lines inside a block: first
// on the block's first line, rest on the following ones.
type linePrefix struct {
	first, rest string
	used        bool
}

type ircWriter struct {
	out  strings.Builder
	opts Options

	emitted     style // formatting in effect on the current output line
	lineStarted bool  // the current line has content (prefixes written)

	pendingSpace      bool // collapsed whitespace waiting for the next word
	pendingSpaceStyle style

	prefixes []*linePrefix
	pre      int // depth of <pre> elements
	preNL    int // newlines seen in <pre> text not yet written
}

// emit writes s (which holds no newline or control code) in style st.
func (w *ircWriter) emit(s string, st style) {
	if s == "" {
		return
	}
	if !w.lineStarted {
		for _, p := range w.prefixes {
			if !p.used {
				w.out.WriteString(p.first)
				p.used = true
			} else {
				w.out.WriteString(p.rest)
			}
		}
		w.lineStarted = true
	}
	w.out.WriteString(transition(w.emitted, st, s))
	w.emitted = st
	w.out.WriteString(s)
}

// newline ends the current line, closing its formatting.
func (w *ircWriter) newline() {
	w.endLine()
	w.out.WriteByte('\n')
	w.lineStarted = false
	w.pendingSpace = false
}

func (w *ircWriter) endLine() {
	w.out.WriteString(transition(w.emitted, style{}, ""))
	w.emitted = style{}
}

// block starts a new line unless the current one is still empty.
func (w *ircWriter) block() {
	w.preNL = 0
	if w.lineStarted {
		w.newline()
	}
	w.pendingSpace = false
}

func isHTMLSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\f'
}

// dropped reports whether r is removed from HTML text: IRC formatting codes
// and the other C0 controls (except whitespace) and DEL.
func dropped(r rune) bool {
	return (r < 0x20 && !isHTMLSpace(r)) || r == 0x7f
}

// text writes an HTML text node.
func (w *ircWriter) text(s string, st style) {
	if w.pre > 0 {
		w.preText(s, st)
		return
	}
	var word strings.Builder
	flush := func() {
		if word.Len() == 0 {
			return
		}
		if w.pendingSpace {
			w.pendingSpace = false
			w.emit(" ", w.pendingSpaceStyle)
		}
		w.emit(word.String(), st)
		word.Reset()
	}
	for _, r := range s {
		switch {
		case isHTMLSpace(r):
			flush()
			if w.lineStarted && !w.pendingSpace {
				w.pendingSpace = true
				w.pendingSpaceStyle = st
			}
		case dropped(r):
		case r == '\u00a0':
			// Matrix clients write &nbsp; to keep spacing; IRC needs none.
			word.WriteByte(' ')
		default:
			word.WriteRune(r)
		}
	}
	flush()
}

// preText writes text inside <pre>: whitespace is kept, newlines start new
// lines, and a trailing newline of the block is dropped.
func (w *ircWriter) preText(s string, st style) {
	var seg strings.Builder
	flush := func() {
		if seg.Len() == 0 {
			return
		}
		for ; w.preNL > 0; w.preNL-- {
			w.newline()
		}
		w.emit(seg.String(), st)
		seg.Reset()
	}
	for _, r := range s {
		switch {
		case r == '\n':
			flush()
			w.preNL++
		case r == '\r' || dropped(r):
		default:
			seg.WriteRune(r)
		}
	}
	flush()
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func (w *ircWriter) walkChildren(n *html.Node, st style) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		w.walk(c, st)
	}
}

func (w *ircWriter) walk(n *html.Node, st style) {
	switch n.Type {
	case html.TextNode:
		w.text(n.Data, st)
		return
	case html.ElementNode:
	case html.DocumentNode:
		w.walkChildren(n, st)
		return
	default:
		return
	}
	switch n.Data {
	case "mx-reply", "script", "style", "head", "title", "template", "noscript":
		return
	case "strong", "b":
		st.bold = true
	case "em", "i", "cite", "var", "dfn":
		st.italic = true
	case "u", "ins":
		st.underline = true
	case "del", "s", "strike":
		st.strike = true
	case "code", "tt", "kbd", "samp":
		st.mono = true
	case "font", "span":
		fg, _ := attr(n, "data-mx-color")
		if v, ok := attr(n, "color"); ok && fg == "" && n.Data == "font" {
			fg = v
		}
		bg, _ := attr(n, "data-mx-bg-color")
		if c := nearestMIRC(fg); c != "" {
			st.fg = c
		}
		if c := nearestMIRC(bg); c != "" {
			st.bg = c
		}
		if _, ok := attr(n, "data-mx-spoiler"); ok {
			// The classic IRC spoiler: black on black, readable when selected.
			st.fg, st.bg = "01", "01"
		}
	case "br":
		w.preNL = 0
		w.newline()
		return
	case "a":
		w.link(n, st)
		return
	case "img":
		alt, _ := attr(n, "alt")
		if alt == "" {
			alt, _ = attr(n, "title")
		}
		w.text(alt, st)
		return
	case "hr":
		w.block()
		w.emit("---", style{})
		w.block()
		return
	case "ul", "ol":
		w.list(n, st)
		return
	case "li":
		// A list item outside of a list.
		w.item(n, st, "• ")
		return
	case "blockquote":
		w.block()
		w.prefixes = append(w.prefixes, &linePrefix{first: "> ", rest: "> "})
		w.walkChildren(n, st)
		w.block()
		w.prefixes = w.prefixes[:len(w.prefixes)-1]
		return
	case "pre":
		w.block()
		st.mono = true
		w.pre++
		w.walkChildren(n, st)
		w.pre--
		w.block()
		return
	case "h1", "h2", "h3", "h4", "h5", "h6":
		st.bold = true
		w.block()
		w.walkChildren(n, st)
		w.block()
		return
	case "td", "th":
		for p := n.PrevSibling; p != nil; p = p.PrevSibling {
			if p.Type == html.ElementNode && (p.Data == "td" || p.Data == "th") {
				w.pendingSpace = false
				w.emit(" | ", style{})
				break
			}
		}
	case "p", "div", "tr", "table", "thead", "tbody", "tfoot", "caption",
		"dl", "dt", "dd", "details", "summary", "section", "article",
		"header", "footer", "figure", "figcaption", "address", "main", "nav", "aside":
		w.block()
		w.walkChildren(n, st)
		w.block()
		return
	}
	w.walkChildren(n, st)
}

func (w *ircWriter) list(n *html.Node, st style) {
	w.block()
	counter := 1
	if n.Data == "ol" {
		if v, ok := attr(n, "start"); ok {
			if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > -1e9 && s < 1e9 {
				counter = s
			}
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type != html.ElementNode || c.Data != "li" {
			w.walk(c, st)
			continue
		}
		marker := "• "
		if n.Data == "ol" {
			marker = strconv.Itoa(counter) + ". "
			counter++
		}
		w.item(c, st, marker)
	}
	w.block()
}

func (w *ircWriter) item(n *html.Node, st style, marker string) {
	w.block()
	w.prefixes = append(w.prefixes, &linePrefix{first: marker, rest: strings.Repeat(" ", len([]rune(marker)))})
	w.walkChildren(n, st)
	w.block()
	w.prefixes = w.prefixes[:len(w.prefixes)-1]
}

// plainText returns the visible text under n with whitespace collapsed.
func plainText(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			switch {
			case c.Type == html.TextNode:
				b.WriteString(c.Data)
			case c.Type == html.ElementNode && c.Data == "mx-reply":
			case c.Type == html.ElementNode && c.Data == "img":
				alt, _ := attr(c, "alt")
				b.WriteString(alt)
			default:
				rec(c)
			}
		}
	}
	rec(n)
	return strings.Join(strings.FieldsFunc(b.String(), func(r rune) bool { return isHTMLSpace(r) || dropped(r) }), " ")
}

func (w *ircWriter) link(n *html.Node, st style) {
	href, _ := attr(n, "href")
	href = strings.TrimSpace(href)
	text := plainText(n)
	if href == "" {
		w.walkChildren(n, st)
		return
	}
	if uri, err := id.ParseMatrixURIOrMatrixToURL(href); err == nil && uri != nil {
		switch {
		case uri.Sigil1 == '@':
			userID := uri.PrimaryIdentifier()
			name := ""
			if w.opts.MentionName != nil {
				name = w.opts.MentionName(userID, text)
			}
			if name == "" {
				name = text
			}
			if name == "" {
				name = userID
			}
			w.text(name, st)
			return
		case uri.Sigil1 == '#' && uri.Sigil2 == 0:
			alias := uri.PrimaryIdentifier()
			if text == "" || text == alias {
				w.text(alias, st)
				return
			}
		}
	}
	if text == "" {
		w.text(href, st)
		return
	}
	w.walkChildren(n, st)
	if text != href && text != strings.TrimPrefix(href, "mailto:") &&
		text != strings.TrimPrefix(href, "https://") && text != strings.TrimPrefix(href, "http://") {
		w.text(" ("+href+")", st)
	}
}
