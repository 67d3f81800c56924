package whatsapp

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// waAllowedTags are the elements waToMatrix may produce; anything else in its output
// would be markup the sender smuggled through.
var waAllowedTags = []string{"strong", "em", "del", "code", "pre", "br", "blockquote", "ul", "ol", "li", "a"}

// FuzzWAToMatrix feeds arbitrary WhatsApp text to the formatter: the HTML it makes
// holds only the elements the formatter writes, properly nested, links only to mentioned
// Matrix users, and the sender's text never becomes markup.
func FuzzWAToMatrix(f *testing.F) {
	for _, seed := range []string{
		"*bold* _it_ ~del~ `code`", "```\nblock <b>\n```", "> quote\n- item\n1. one",
		"@33612345678 hi", "<script>alert(1)</script>", "a*b*c", "*_~`nested`~_*", "&amp; <a href=x>",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		body, formatted, mentions := waToMatrix(text, testWAMention)
		if utf8.ValidString(text) && (!utf8.ValidString(body) || !utf8.ValidString(formatted)) {
			t.Fatalf("%q: output is not valid UTF-8", text)
		}
		for _, m := range mentions {
			if _, _, ok := testWAMention(m); !ok {
				t.Fatalf("%q: mentions %q, who is not a contact", text, m)
			}
		}
		checkWAHTML(t, text, formatted, waAllowedTags)
	})
}

// checkWAHTML fails when HTML made from WhatsApp input holds more than the converter
// writes: elements outside allowed, attributes other than mention links and list
// starts, or elements left open or closed out of order.
func checkWAHTML(t *testing.T, input, formatted string, allowed []string) {
	t.Helper()
	var open []string
	z := html.NewTokenizer(strings.NewReader(formatted))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			if !slices.Contains(allowed, tok.Data) {
				t.Fatalf("%q: produced a <%s> element: %q", input, tok.Data, formatted)
			}
			for _, a := range tok.Attr {
				link := tok.Data == "a" && a.Key == "href" && strings.HasPrefix(a.Val, "https://matrix.to/#/")
				start := tok.Data == "ol" && a.Key == "start" && a.Val != "" && strings.Trim(a.Val, "0123456789") == ""
				if !link && !start {
					t.Fatalf("%q: produced attribute %s=%q on <%s>", input, a.Key, a.Val, tok.Data)
				}
			}
			if tt == html.StartTagToken && tok.Data != "br" {
				open = append(open, tok.Data)
			}
		case html.EndTagToken:
			if len(open) == 0 || open[len(open)-1] != tok.Data {
				t.Fatalf("%q: </%s> does not close the open %v: %q", input, tok.Data, open, formatted)
			}
			open = open[:len(open)-1]
		}
	}
	if len(open) != 0 {
		t.Fatalf("%q: left %v open: %q", input, open, formatted)
	}
}

// FuzzMatrixToWA feeds arbitrary HTML to the reverse formatter: it never fails, keeps
// valid text valid, and mentions only Matrix users who are WhatsApp contacts.
func FuzzMatrixToWA(f *testing.F) {
	for _, seed := range [][2]string{
		{`<strong>b</strong> <em>i</em> <del>d</del> <code>c</code>`, "b i d c"},
		{`<pre><code>x</code></pre><blockquote>q</blockquote><ul><li>a</li></ul>`, "x q a"},
		{`<a href="https://matrix.to/#/@alice:example.org">Alice</a> hi`, "Alice hi"},
		{`<mx-reply><blockquote>old</blockquote></mx-reply>new`, "> old\n\nnew"},
		{`<table><tr><td>x</td></tr></table><img src=x onerror=y>`, "x"},
		{"", "plain body"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, formatted, body string) {
		text, mentioned := matrixToWA(formatted, body, testMatrixMention)
		if utf8.ValidString(formatted) && utf8.ValidString(body) && !utf8.ValidString(text) {
			t.Fatalf("(%q, %q): output %q is not valid UTF-8", formatted, body, text)
		}
		for _, jid := range mentioned {
			if jid != "33612345678" && jid != "33699999999" {
				t.Fatalf("(%q, %q): mentions %q, who is not a contact", formatted, body, jid)
			}
		}
	})
}
