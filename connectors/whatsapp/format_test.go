package whatsapp

import (
	"slices"
	"testing"
)

// testWAMention resolves WhatsApp numbers the way the session's contact lookup would.
// Bob's name carries HTML-special characters to check that pills escape them.
func testWAMention(jidUser string) (mxid, name string, ok bool) {
	switch jidUser {
	case "33612345678":
		return "@alice:example.org", "Alice", true
	case "33699999999":
		return "@bob:example.org", `Bob "The <Builder>" & Co`, true
	case "111":
		return `@we"ird&:example.org`, "Weird", true
	}
	return "", "", false
}

// testMatrixMention is the reverse lookup: Matrix users that are WhatsApp contacts.
func testMatrixMention(mxid string) (jidUser string, ok bool) {
	switch mxid {
	case "@alice:example.org":
		return "33612345678", true
	case "@bob:example.org":
		return "33699999999", true
	}
	return "", false
}

// TestFormatWAToMatrix checks every WhatsApp marker, the cases where markers must stay
// literal, mentions and escaping, with exact body, HTML and mention outputs.
func TestFormatWAToMatrix(t *testing.T) {
	const alicePill = `<a href="https://matrix.to/#/@alice:example.org">Alice</a>`
	tests := []struct {
		name     string
		in       string
		body     string // "" means same as in
		html     string
		mentions []string
	}{
		{name: "plain", in: "hello world", html: ""},
		{name: "empty", in: "", html: ""},
		{name: "bold", in: "*bold*", html: "<strong>bold</strong>"},
		{name: "italic", in: "_italic_", html: "<em>italic</em>"},
		{name: "strike", in: "~strike~", html: "<del>strike</del>"},
		{name: "inline code", in: "`code`", html: "<code>code</code>"},
		{name: "monospace block", in: "```mono```", html: "<pre><code>mono</code></pre>"},
		{name: "markers mid sentence", in: "say *hi* to _all_ now", html: "say <strong>hi</strong> to <em>all</em> now"},
		{name: "markers next to punctuation", in: "(*paren*), _yes_!", html: "(<strong>paren</strong>), <em>yes</em>!"},
		{name: "nesting", in: "*_both_*", html: "<strong><em>both</em></strong>"},
		{name: "triple nesting", in: "~*_all three_*~", html: "<del><strong><em>all three</em></strong></del>"},
		{name: "code span keeps markers", in: "`*not* _this_`", html: "<code>*not* _this_</code>"},
		{name: "code block keeps markers across lines", in: "```\nline 1\n*not bold*\n> no quote\n```", html: "<pre><code>line 1\n*not bold*\n&gt; no quote</code></pre>"},
		{name: "code block between lines", in: "intro\n```\ncode\n```\noutro", html: "intro<pre><code>code</code></pre>outro"},
		{name: "unclosed fence", in: "```nope", html: ""},
		{name: "unmatched opener", in: "*open only", html: ""},
		{name: "opener before space", in: "a * b * c", html: ""},
		{name: "closer after space", in: "*bold *", html: ""},
		{name: "closer before letter", in: "*bold*text", html: ""},
		{name: "one bold one stray", in: "*a* b*", html: "<strong>a</strong> b*"},
		{name: "snake case", in: "snake_case_words", html: ""},
		{name: "math", in: "2*3*4", html: ""},
		{name: "no span across lines", in: "*a\nb*", html: ""},
		{name: "newlines", in: "*bold*\nline two\n\nlast", html: "<strong>bold</strong><br>line two<br><br>last"},
		{name: "quote", in: "> quoted\n> more\nafter", html: "<blockquote>quoted<br>more</blockquote>after"},
		{name: "bare quote marker", in: "> ", html: ""},
		{name: "no space after quote marker", in: ">not a quote", html: ""},
		{name: "bullet list", in: "- one\n* two", html: "<ul><li>one</li><li>two</li></ul>"},
		{name: "list item with markup", in: "- *bold* item", html: "<ul><li><strong>bold</strong> item</li></ul>"},
		{name: "ordered list", in: "1. first\n2. second", html: "<ol><li>first</li><li>second</li></ol>"},
		{name: "ordered list from 3", in: "3. c\n4. d", html: `<ol start="3"><li>c</li><li>d</li></ol>`},
		{name: "not a list", in: "-5 degrees, 3.5 apples", html: ""},
		{name: "list then text", in: "text\n- a\n- b\nmore", html: "text<ul><li>a</li><li>b</li></ul>more"},
		{
			name: "escaping with markup",
			in:   `<script>alert('x')</script> & "*b*"`,
			html: `&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;<strong>b</strong>&#34;`,
		},
		{name: "escaping without markup stays plain", in: "<b>not html</b> & co", html: ""},
		{name: "escaping in code block", in: "```<i>&</i>```", html: "<pre><code>&lt;i&gt;&amp;&lt;/i&gt;</code></pre>"},
		{
			name:     "known mention",
			in:       "hi @33612345678!",
			body:     "hi Alice!",
			html:     "hi " + alicePill + "!",
			mentions: []string{"33612345678"},
		},
		{name: "unknown mention", in: "hi @123", html: ""},
		{
			name:     "pill name escaped",
			in:       "@33699999999",
			body:     `Bob "The <Builder>" & Co`,
			html:     `<a href="https://matrix.to/#/@bob:example.org">Bob &#34;The &lt;Builder&gt;&#34; &amp; Co</a>`,
			mentions: []string{"33699999999"},
		},
		{
			name:     "pill href escaped",
			in:       "@111",
			body:     "Weird",
			html:     `<a href="https://matrix.to/#/@we%22ird&amp;:example.org">Weird</a>`,
			mentions: []string{"111"},
		},
		{
			name:     "mentions deduplicated in order",
			in:       "@33699999999 @33612345678 @33699999999",
			body:     `Bob "The <Builder>" & Co Alice Bob "The <Builder>" & Co`,
			html:     `<a href="https://matrix.to/#/@bob:example.org">Bob &#34;The &lt;Builder&gt;&#34; &amp; Co</a> ` + alicePill + ` <a href="https://matrix.to/#/@bob:example.org">Bob &#34;The &lt;Builder&gt;&#34; &amp; Co</a>`,
			mentions: []string{"33699999999", "33612345678"},
		},
		{
			name:     "mention in bold",
			in:       "*@33612345678*",
			body:     "*Alice*",
			html:     "<strong>" + alicePill + "</strong>",
			mentions: []string{"33612345678"},
		},
		{name: "mention in code stays literal", in: "`@33612345678`", html: "<code>@33612345678</code>"},
		{name: "e-mail is not a mention", in: "mail a@33612345678", html: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, html, mentions := waToMatrix(tt.in, testWAMention)
			wantBody := tt.body
			if wantBody == "" {
				wantBody = tt.in
			}
			if body != wantBody {
				t.Errorf("body = %q, want %q", body, wantBody)
			}
			if html != tt.html {
				t.Errorf("html = %q, want %q", html, tt.html)
			}
			if !slices.Equal(mentions, tt.mentions) {
				t.Errorf("mentions = %q, want %q", mentions, tt.mentions)
			}
		})
	}
}

// TestFormatWAToMatrixNilMention checks that a missing lookup leaves mentions as text.
func TestFormatWAToMatrixNilMention(t *testing.T) {
	body, html, mentions := waToMatrix("hi @33612345678", nil)
	if body != "hi @33612345678" || html != "" || mentions != nil {
		t.Errorf("got %q, %q, %q", body, html, mentions)
	}
}

// TestFormatMatrixToWA checks each HTML construct's WhatsApp rendering, with exact
// text and mention outputs.
func TestFormatMatrixToWA(t *testing.T) {
	const alice = `<a href="https://matrix.to/#/@alice:example.org">Alice</a>`
	const bob = `<a href="https://matrix.to/#/@bob:example.org">Bob</a>`
	tests := []struct {
		name     string
		html     string
		body     string
		want     string
		mentions []string
	}{
		{name: "no HTML returns body", html: "", body: "plain *text* <b>", want: "plain *text* <b>"},
		{name: "strong", html: "<strong>bold</strong>", want: "*bold*"},
		{name: "b", html: "<b>bold</b>", want: "*bold*"},
		{name: "em", html: "<em>it</em>", want: "_it_"},
		{name: "i", html: "<i>it</i>", want: "_it_"},
		{name: "del", html: "<del>gone</del>", want: "~gone~"},
		{name: "s and strike", html: "<s>a</s> <strike>b</strike>", want: "~a~ ~b~"},
		{name: "inline code", html: "<code>x := 1</code>", want: "`x := 1`"},
		{name: "code block", html: "<pre><code class=\"language-go\">a := 1\nb *c* _d_\n</code></pre>", want: "```a := 1\nb *c* _d_```"},
		{name: "nesting", html: "<strong><em>both</em></strong>", want: "*_both_*"},
		{name: "no markers inside code", html: "<code><strong>x</strong></code><pre><em>y</em></pre>", want: "`x`\n```y```"},
		{name: "no doubled markers", html: "<b><strong>x</strong></b>", want: "*x*"},
		{name: "empty element", html: "a<strong> </strong>b", want: "ab"},
		{name: "literal stars survive", html: "2*3*4 and * star", want: "2*3*4 and * star"},
		{name: "unordered list", html: "<ul><li>one *</li><li><strong>two</strong></li></ul>", want: "- one *\n- *two*"},
		{name: "ordered list", html: "<ol><li>x</li><li>y</li></ol>", want: "1. x\n2. y"},
		{name: "ordered list start", html: `<ol start="3"><li>c</li></ol>`, want: "3. c"},
		{name: "list in quote", html: "<blockquote><ul><li>a</li></ul></blockquote>", want: "> - a"},
		{name: "blockquote", html: "<blockquote>quoted<br>more</blockquote>after", want: "> quoted\n> more\nafter"},
		{name: "paragraphs and br", html: "<p>one<br>two</p><p>three</p>", want: "one\ntwo\n\nthree"},
		{name: "link with text", html: `see <a href="https://example.com/a">the site</a>`, want: "see the site (https://example.com/a)"},
		{name: "link equal to url", html: `<a href="https://example.com">https://example.com</a>`, want: "https://example.com"},
		{name: "link without scheme", html: `<a href="https://example.com">example.com</a>`, want: "example.com"},
		{name: "link with star in url", html: `<a href="https://example.com/*x*">star</a>`, want: "star (https://example.com/*x*)"},
		{name: "entities", html: "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#39;s&#39;", want: `<script>alert(1)</script> & "q" 's'`},
		{name: "known pill", html: alice + " hi", want: "@33612345678 hi", mentions: []string{"33612345678"}},
		{name: "unknown pill", html: `<a href="https://matrix.to/#/@carol:example.org">Carol &quot;C&quot; &amp; co</a>`, want: `Carol "C" & co`},
		{name: "pills deduplicated in order", html: bob + " " + alice + " " + bob, want: "@33699999999 @33612345678 @33699999999", mentions: []string{"33699999999", "33612345678"}},
		{name: "room alias pill", html: `<a href="https://matrix.to/#/%23room:example.org">#room:example.org</a>`, want: "#room:example.org"},
		{
			name:     "reply fallback dropped",
			html:     `<mx-reply><blockquote><a href="https://matrix.to/#/!room:example.org/$ev">In reply to</a> ` + alice + `<br>original *text*</blockquote></mx-reply>the <em>answer</em>`,
			want:     "the _answer_",
			mentions: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, mentions := matrixToWA(tt.html, tt.body, testMatrixMention)
			if got != tt.want {
				t.Errorf("text = %q, want %q", got, tt.want)
			}
			if !slices.Equal(mentions, tt.mentions) {
				t.Errorf("mentions = %q, want %q", mentions, tt.mentions)
			}
		})
	}
}

// TestFormatMatrixToWANilMention checks that a missing lookup falls back to pill text.
func TestFormatMatrixToWANilMention(t *testing.T) {
	got, mentions := matrixToWA(`<a href="https://matrix.to/#/@alice:example.org">Alice</a>`, "Alice", nil)
	if got != "Alice" || mentions != nil {
		t.Errorf("got %q, %q", got, mentions)
	}
}

// TestFormatRoundTrip sends a message mixing every construct to Matrix and back:
// WhatsApp must receive what was written. Blocks are separated by text lines because
// Matrix HTML puts a blank line between adjacent blocks.
func TestFormatRoundTrip(t *testing.T) {
	const in = "*Hi* @33612345678, _see_ ~this~ `code` & <that>:\n" +
		"> quoted *bold*\n" +
		"then\n" +
		"- one\n" +
		"- _two_\n" +
		"and\n" +
		"1. first\n" +
		"2. second\n" +
		"so\n" +
		"```x := *y* // _z_```\n" +
		"2*3*4 snake_case bye"
	const wantHTML = `<strong>Hi</strong> <a href="https://matrix.to/#/@alice:example.org">Alice</a>, <em>see</em> <del>this</del> <code>code</code> &amp; &lt;that&gt;:` +
		"<blockquote>quoted <strong>bold</strong></blockquote>" +
		"then" +
		"<ul><li>one</li><li><em>two</em></li></ul>" +
		"and" +
		"<ol><li>first</li><li>second</li></ol>" +
		"so" +
		"<pre><code>x := *y* // _z_</code></pre>" +
		"2*3*4 snake_case bye"
	body, html, mentions := waToMatrix(in, testWAMention)
	if html != wantHTML {
		t.Errorf("html = %q, want %q", html, wantHTML)
	}
	if wantBody := "*Hi* Alice" + in[len("*Hi* @33612345678"):]; body != wantBody {
		t.Errorf("body = %q, want %q", body, wantBody)
	}
	if !slices.Equal(mentions, []string{"33612345678"}) {
		t.Errorf("mentions = %q", mentions)
	}
	back, backMentions := matrixToWA(html, body, testMatrixMention)
	if back != in {
		t.Errorf("round trip = %q, want %q", back, in)
	}
	if !slices.Equal(backMentions, []string{"33612345678"}) {
		t.Errorf("round trip mentions = %q", backMentions)
	}
}
