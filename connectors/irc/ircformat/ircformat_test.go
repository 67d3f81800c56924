package ircformat

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ergochat/irc-go/ircfmt"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

func TestIRCToMatrix(t *testing.T) {
	tests := []struct {
		name, in, body, html string
	}{
		{"plain", "hello world", "hello world", ""},
		{"plain html chars", "a < b && c > d", "a < b && c > d", ""},
		{"codes without effect", "\x02\x02hi\x0f", "hi", ""},
		{"bold", "say \x02hi\x02 now", "say hi now", "say <strong>hi</strong> now"},
		{"bold unclosed", "\x02hi", "hi", "<strong>hi</strong>"},
		{"italic underline strike mono", "\x1di\x1d \x1fu\x1f \x1es\x1e \x11m\x11",
			"i u s m", "<em>i</em> <u>u</u> <del>s</del> <code>m</code>"},
		{"escape", "\x02<b>&'\"", "<b>&'\"", "<strong>&lt;b&gt;&amp;&#39;&#34;</strong>"},
		{"overlap", "\x02a\x1db\x02c\x1d", "abc", "<strong>a<em>b</em></strong><em>c</em>"},
		{"overlap reopen", "\x1da\x02b\x1dc", "abc", "<em>a<strong>b</strong></em><strong>c</strong>"},
		{"reset", "\x02\x1d\x1fabc\x0fdef", "abcdef", "<strong><em><u>abc</u></em></strong>def"},
		{"colour fg", "\x0304red\x03 plain", "red plain", `<font data-mx-color="#ff0000">red</font> plain`},
		{"colour one digit", "\x034red", "red", `<font data-mx-color="#ff0000">red</font>`},
		{"colour fg bg", "\x0304,12x", "x", `<font data-mx-color="#ff0000" data-mx-bg-color="#0000fc">x</font>`},
		{"colour digits after", "\x03041234", "1234", `<font data-mx-color="#ff0000">1234</font>`},
		{"colour comma text", "\x0304,x", ",x", `<font data-mx-color="#ff0000">,x</font>`},
		{"colour extended", "\x0352a\x0398b", "ab", `<font data-mx-color="#ff0000">a</font><font data-mx-color="#ffffff">b</font>`},
		{"colour 99 default", "\x0399,04a", "a", `<font data-mx-bg-color="#ff0000">a</font>`},
		{"colour change keeps bg", "\x0304,01a\x0309b", "ab",
			`<font data-mx-color="#ff0000" data-mx-bg-color="#000000">a</font><font data-mx-color="#00fc00" data-mx-bg-color="#000000">b</font>`},
		{"colour inside bold", "\x02b\x0304r\x03b", "brb", `<strong>b<font data-mx-color="#ff0000">r</font>b</strong>`},
		{"hex colour", "\x04FF8800orange\x04 x", "orange x", `<font data-mx-color="#ff8800">orange</font> x`},
		{"hex colour bg", "\x04ff8800,000000o", "o", `<font data-mx-color="#ff8800" data-mx-bg-color="#000000">o</font>`},
		{"hex colour invalid", "\x04ff88zz", "ff88zz", ""},
		{"reverse ignored", "\x16rev\x16", "rev", ""},
		{"spaces kept", "\x02a  b \x02", "a  b ", "<strong>a &nbsp;b&nbsp;</strong>"},
		{"leading space", " \x02x", " x", "&nbsp;<strong>x</strong>"},
		{"invalid utf8", "\x02a\xffb", "a\uFFFDb", "<strong>a\uFFFDb</strong>"},
		{"invalid utf8 plain", "a\xff\xfeb", "a\uFFFD\uFFFDb", ""},
		{"unicode", "\x1dh\u00e9llo \U0001F389", "h\u00e9llo \U0001F389", "<em>h\u00e9llo \U0001F389</em>"},
		{"newline", "\x02a\nb", "a\nb", "<strong>a<br>b</strong>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, fb := IRCToMatrix(tt.in)
			if body != tt.body || fb != tt.html {
				t.Errorf("IRCToMatrix(%q) = %q, %q; want %q, %q", tt.in, body, fb, tt.body, tt.html)
			}
			checkHTML(t, fb)
		})
	}
}

func TestMatrixToIRC(t *testing.T) {
	tests := []struct {
		name, body, html, want string
	}{
		{"no html", "plain *text*", "", "plain *text*"},
		{"no html multiline", "a\nb", "", "a\nb"},
		{"bold", "x", "say <strong>hi</strong> now", "say \x02hi\x02 now"},
		{"b i u s", "x", "<b>b</b> <i>i</i> <u>u</u> <s>s</s> <del>d</del> <strike>k</strike> <em>e</em>",
			"\x02b\x02 \x1di\x1d \x1fu\x1f \x1es\x1e \x1ed\x1e \x1ek\x1e \x1de\x1d"},
		{"inline code", "x", "run <code>go test</code>", "run \x11go test\x11"},
		{"nested same", "x", "<b>a<b>b</b>c</b>", "\x02abc\x02"},
		{"nested mixed", "x", "<b>a<i>b</i></b>c", "\x02a\x1db\x0fc"},
		{"colour", "x", `<font color="#ff0000">red</font> x`, "\x0304red\x03 x"},
		{"mx colour", "x", `<span data-mx-color="#00ff00" data-mx-bg-color="#000000">g</span>`, "\x0309,01g\x03"},
		{"colour digit guard", "x", `<font data-mx-color="#ff0000">1</font>2`, "\x03041\x0f2"},
		{"colour comma guard", "x", `<font data-mx-color="#ff0000">,5</font>`, "\x0304\x02\x02,5\x03"},
		{"named colour", "x", `<font color="blue">b</font>`, "\x0312b\x03"},
		{"bad colour", "x", `<font color="notacolour">b</font>`, "b"},
		{"link", "x", `see <a href="https://example.org/a">the docs</a>`, "see the docs (https://example.org/a)"},
		{"link same text", "x", `<a href="https://example.org">https://example.org</a>`, "https://example.org"},
		{"link bare host", "x", `<a href="https://example.org">example.org</a>`, "example.org"},
		{"link no text", "x", `<a href="https://example.org"></a>`, "https://example.org"},
		{"pill", "x", `<a href="https://matrix.to/#/@alice:example.org">Alice</a>: hi`, "Alice: hi"},
		{"pill encoded", "x", `<a href="https://matrix.to/#/%40alice%3Aexample.org">Alice</a>: hi`, "Alice: hi"},
		{"pill no text", "x", `<a href="https://matrix.to/#/@alice:example.org"></a> hi`, "@alice:example.org hi"},
		{"room alias", "x", `<a href="https://matrix.to/#/#room:example.org">#room:example.org</a>`, "#room:example.org"},
		{"br", "x", "a<br>b<br/>c", "a\nb\nc"},
		{"paragraphs", "x", "<p>one</p>\n<p>two</p>", "one\ntwo"},
		{"formatting across lines", "x", "<b>a<br>b</b>", "\x02a\x02\n\x02b\x02"},
		{"ul", "x", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>", "• one\n• two"},
		{"ol start", "x", `<ol start="3"><li>c</li><li>d</li></ol>`, "3. c\n4. d"},
		{"nested list", "x", "<ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>", "• a\n  • b\n• c"},
		{"blockquote", "x", "<blockquote><p>one</p><p>two</p></blockquote><p>reply</p>", "> one\n> two\nreply"},
		{"pre", "x", "<pre><code class=\"language-go\">func f() {\n\treturn  1\n}\n</code></pre>",
			"\x11func f() {\x11\n\x11\treturn  1\x11\n\x11}\x11"},
		{"pre blank line", "x", "<pre><code>a\n\nb\n</code></pre>", "\x11a\x11\n\n\x11b\x11"},
		{"pre in quote", "x", "<blockquote><pre>a\nb</pre></blockquote>", "> \x11a\x11\n> \x11b\x11"},
		{"heading", "x", "<h1>Title</h1><p>text</p>", "\x02Title\x02\ntext"},
		{"mx-reply", "x", `<mx-reply><blockquote><a href="https://matrix.to/#/!r:x/$e">In reply to</a> <a href="https://matrix.to/#/@bob:x">bob</a><br>quoted</blockquote></mx-reply>my answer`, "my answer"},
		{"entities", "x", "a &lt;b&gt; &amp; &quot;c&quot; &#x1F600;", "a <b> & \"c\" \U0001F600"},
		{"nbsp", "x", "a&nbsp;&nbsp;b", "a  b"},
		{"whitespace collapse", "x", "  a \n  b\t c  ", "a b c"},
		{"control codes in text", "x", "a\x02b\x03c\x01d", "abcd"},
		{"spoiler", "x", `<span data-mx-spoiler="">secret</span>`, "\x0301,01secret\x03"},
		{"img", "x", `<img src="mxc://x/y" alt=":party:" data-mx-emoticon> yes`, ":party: yes"},
		{"hr", "x", "a<hr>b", "a\n---\nb"},
		{"table", "x", "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>", "k | v\na | 1"},
		{"invalid utf8 body", "a\xffb", "", "a\uFFFDb"},
		{"empty result", "x", "<mx-reply>only</mx-reply>", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MatrixToIRC(tt.body, tt.html)
			if got != tt.want {
				t.Errorf("MatrixToIRC(%q, %q)\n got %q\nwant %q", tt.body, tt.html, got, tt.want)
			}
			checkIRCLines(t, got, tt.html != "")
		})
	}
}

func TestMatrixToIRCWithMentionName(t *testing.T) {
	var gotID, gotName string
	opts := Options{MentionName: func(userID, displayName string) string {
		gotID, gotName = userID, displayName
		if userID == "@irc_bob:example.org" {
			return "bob"
		}
		return ""
	}}
	out := MatrixToIRCWith("x", `<a href="https://matrix.to/#/@irc_bob:example.org">Bob (IRC)</a>: ping`, opts)
	if out != "bob: ping" || gotID != "@irc_bob:example.org" || gotName != "Bob (IRC)" {
		t.Errorf("got %q (id %q, name %q)", out, gotID, gotName)
	}
	// An empty answer falls back to the display name.
	out = MatrixToIRCWith("x", `<b><a href="matrix:u/carol:example.org">Carol</a></b> hi`, opts)
	if out != "\x02Carol\x02 hi" {
		t.Errorf("fallback: got %q", out)
	}
}

// TestRoundTrip checks that IRC text survives IRC → Matrix → IRC with the
// same visible text and the same formatting on every character.
func TestRoundTrip(t *testing.T) {
	tests := []string{
		"plain text",
		"\x02bold\x02 normal",
		"\x1ditalic\x1d \x1funder\x1f \x1estrike\x1e \x11mono\x11",
		"\x02a\x1db\x02c\x1d",
		"\x0304red\x03 \x0312,01blue on black\x0f done",
		"\x0304,01\x02both\x02 colour\x03 none",
		"\x03041234 digits after colour",
		"\x0304,a comma",
		"  two  spaces \x02 here \x02  ",
		"\x02<html> & \"quotes\"",
		"caf\u00e9 \x1d\U0001F389\x1d",
	}
	for _, in := range tests {
		body, fb := IRCToMatrix(in)
		out := MatrixToIRC(body, fb)
		if strip(out) != strip(in) {
			t.Errorf("%q: visible text %q became %q (via %q)", in, strip(in), strip(out), fb)
		}
		a, b := styledRunes(in), styledRunes(out)
		if len(a) != len(b) {
			continue
		}
		for k := range a {
			if a[k].st != b[k].st {
				t.Errorf("%q: rune %d (%q) style %+v became %+v in %q", in, k, a[k].r, a[k].st, b[k].st, out)
				break
			}
		}
	}
	// Matrix → IRC → Matrix keeps simple HTML as it is.
	for _, fb := range []string{
		"<strong>bold</strong> and <em>italic</em>",
		`<font data-mx-color="#ff0000">red</font> <u>u</u> <del>d</del> <code>c</code>`,
		"<strong>a<em>b</em></strong><em>c</em>",
	} {
		_, got := IRCToMatrix(MatrixToIRC("x", fb))
		if got != fb {
			t.Errorf("HTML round trip: %q became %q", fb, got)
		}
	}
}

func TestSplitLines(t *testing.T) {
	long := strings.Repeat("word ", 30)
	tests := []struct {
		name string
		in   string
		max  int
		want []string
	}{
		{"short", "hello", 10, []string{"hello"}},
		{"empty lines dropped", "a\n\n\r\n \nb\r\n\x02\x02\n", 10, []string{"a", "b"}},
		{"cr alone", "a\rb", 10, []string{"a", "b"}},
		{"cut at space", "hello world foo", 11, []string{"hello world", "foo"}},
		{"cut at last space", "aa bb cc dd", 8, []string{"aa bb cc", "dd"}},
		{"spaces at cut dropped", "aaaa    bbbb", 6, []string{"aaaa", "bbbb"}},
		{"long word", "abcdefghij", 4, []string{"abcd", "efgh", "ij"}},
		{"utf8 boundary", "ééééé", 5, []string{"éé", "éé", "é"}},
		{"emoji", "🎉🎉🎉", 5, []string{"🎉", "🎉", "🎉"}},
		{"bold carried", "\x02aaa bbb\x02 c", 8, []string{"\x02aaa\x0f", "\x02bbb\x02 c"}},
		{"colour carried", "\x0304red red red", 12, []string{"\x0304red red\x0f", "\x0304red"}},
		{"colour digit guard", "\x0304aaaa 123", 9, []string{"\x0304aaaa\x0f", "\x0304123"}},
		{"colour comma guard", "\x0304aaaa ,12", 10, []string{"\x0304aaaa\x0f", "\x0304\x02\x02,12"}},
		{"hex carried", "\x04ff0000,00ff00abc def", 18, []string{"\x04ff0000,00ff00abc\x0f", "\x04ff0000,00ff00def"}},
		{"reopen counts", "\x02\x1d\x1faaaaaa", 6, []string{"\x02\x1d\x1faa\x0f", "\x02\x1d\x1faa\x0f", "\x02\x1d\x1faa"}},
		{"tiny limit drops formatting", "\x02\x1d\x1fabc", 1, []string{"a", "b", "c"}},
		{"rune wider than limit", "a🎉b", 2, []string{"a", "?", "b"}},
		{"zero", "abc", 0, nil},
		{"negative", "abc", -3, nil},
		{"exact fit", "abcd", 4, []string{"abcd"}},
		{"long", long, 50, []string{strings.TrimSpace(long[:50]), strings.TrimSpace(long[50:100]), long[100:]}},
		{"trailing codes", "aaaa bbbb\x02", 5, []string{"aaaa", "bbbb\x02"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SplitLines(tt.in, tt.max)
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("SplitLines(%q, %d)\n got %q\nwant %q", tt.in, tt.max, got, tt.want)
			}
			checkSplit(t, tt.in, tt.max, got)
		})
	}
}

// TestSplitLinesProperties checks the splitter's guarantees on many random
// inputs and limits.
func TestSplitLinesProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 5000; n++ {
		in := randomIRC(rng, rng.IntN(300))
		max := 1 + rng.IntN(80)
		if n%10 == 0 {
			max = 100 + rng.IntN(400)
		}
		checkSplit(t, in, max, SplitLines(in, max))
		if t.Failed() {
			return
		}
	}
}

func TestMaxMessageBytes(t *testing.T) {
	tests := []struct {
		hostLen int
		target  string
		want    int
	}{
		{0, "#go-nuts", 512 - len(":") - 63 - len(" PRIVMSG #go-nuts :\r\n")},
		{-1, "#a", 498 - 63 - 2},
		{len("alice!~a@example.org"), "#chan", 498 - 20 - 5},
		{600, "#chan", 0},
	}
	for _, tt := range tests {
		if got := MaxMessageBytes(tt.hostLen, tt.target); got != tt.want {
			t.Errorf("MaxMessageBytes(%d, %q) = %d, want %d", tt.hostLen, tt.target, got, tt.want)
		}
	}
	// The computed limit really produces 512-byte lines.
	prefix := ":" + strings.Repeat("n", 63) + " PRIVMSG #c :"
	for _, p := range SplitLines(strings.Repeat("ab\x02c ", 400), MaxMessageBytes(0, "#c")) {
		if l := len(prefix + p + "\r\n"); l > 512 {
			t.Fatalf("line of %d bytes", l)
		}
	}
}

func TestStripMatchesIrcfmt(t *testing.T) {
	// Our stripper knows \x04 hex colours, which ircfmt v0.6.0 does not;
	// on everything else they agree.
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 2000; n++ {
		in := strings.ReplaceAll(randomIRC(rng, rng.IntN(60)), "\x04", "")
		if got, want := strip(in), ircfmt.Strip(in); got != want {
			t.Fatalf("strip(%q) = %q, ircfmt.Strip = %q", in, got, want)
		}
	}
}

func FuzzIRCToMatrix(f *testing.F) {
	for _, s := range []string{"", "plain", "\x02b\x1di\x02c", "\x0304,12x\x03", "\x04ff8800,000000x\x04",
		"a\xffb", "\x02a  b ", "<&>\x1f\n\x1f", "\x0399,99x", "\x11\x16\x1e\x0f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		body, fb := IRCToMatrix(line)
		if !utf8.ValidString(body) || !utf8.ValidString(fb) {
			t.Fatalf("invalid UTF-8: %q, %q", body, fb)
		}
		if want := strip(sanitizeUTF8(line)); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
		if fb == "" {
			return
		}
		checkHTML(t, fb)
		if !strings.ContainsAny(body, "\x00\r") {
			// &nbsp; written for spacing reads back as U+00A0, as does a
			// real U+00A0 in the body: compare with both as spaces.
			nbsp := strings.NewReplacer("\u00a0", " ")
			if text := htmlText(t, fb); nbsp.Replace(text) != nbsp.Replace(body) {
				t.Fatalf("HTML %q shows %q, body is %q", fb, text, body)
			}
		}
	})
}

func FuzzMatrixToIRC(f *testing.F) {
	for _, s := range []string{"", "<b>x</b>", "<ul><li>a<ol><li>b</li></ol></li></ul>", "<pre><code>a\n\tb\n</code></pre>",
		`<a href="https://matrix.to/#/@a:b">A</a>`, `<font color="#123456">c</font><span data-mx-bg-color="#fff">d</span>`,
		"<blockquote>a<br>b</blockquote>", "<mx-reply>x</mx-reply>y", "<b>a<i>b</b>c</i>", "<table><tr><td>1<td>2</table>"} {
		f.Add("body", s)
	}
	f.Fuzz(func(t *testing.T, body, fb string) {
		out := MatrixToIRC(body, fb)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		if fb == "" {
			return
		}
		checkIRCLines(t, out, true)
		for _, p := range SplitLines(out, 60) {
			if len(p) > 60 {
				t.Fatalf("piece too long: %q", p)
			}
			_, h := IRCToMatrix(p)
			checkHTML(t, h)
		}
	})
}

func FuzzSplitLines(f *testing.F) {
	for _, s := range []string{"", "hello world", "\x02bold text here\x02 and more", "\x0304,12colour 123 ,45",
		"\x04ff0000,00ff00hex colour", "ééé 🎉🎉 a\nb\r\nc", "aaaa    bbbb", "\x02\x1d\x1f\x1e\x11\x16x y z"} {
		f.Add(s, 10)
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, text string, max int) {
		max %= 600
		checkSplit(t, text, max, SplitLines(text, max))
	})
}

func BenchmarkSplitLines(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	text := randomIRC(rng, 2000)
	max := MaxMessageBytes(0, "#channel")
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		SplitLines(text, max)
	}
}

func BenchmarkIRCToMatrix(b *testing.B) {
	line := "\x02hello\x02 \x0304,01world\x03 this is a \x1dformatted\x1d line with <html> & \x1fstuff\x1f in it, \x11code\x11 too"
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		IRCToMatrix(line)
	}
}

func BenchmarkMatrixToIRC(b *testing.B) {
	fb := `<p><strong>hello</strong> <font data-mx-color="#ff0000">world</font>, see <a href="https://example.org">this</a></p><ul><li>one</li><li><em>two</em></li></ul>`
	b.ReportAllocs()
	for b.Loop() {
		MatrixToIRC("x", fb)
	}
}

// ---- helpers ----

var fragments = []string{
	"a", "word", "hello", "x", "1", "23", ",", ",5", " ", " ", " ", "  ", "é", "日本語", "🎉", "\u00a0",
	"\x02", "\x1d", "\x1f", "\x1e", "\x11", "\x16", "\x0f", "\x03", "\x034", "\x0304", "\x0304,12", "\x0399",
	"\x0399,01", "\x03,", "\x04", "\x04ff8800", "\x04FF8800,0000ff", "\x04abc", "\n", "\r\n", "<", "&",
	"supercalifragilisticexpialidocious", "\xff",
}

func randomIRC(rng *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(fragments[rng.IntN(len(fragments))])
	}
	return b.String()
}

type styledRune struct {
	r  string
	st style
}

// styledRunes lists the visible runes of an IRC line with their formatting
// (colours normalised to hex).
func styledRunes(s string) []styledRune {
	var out []styledRune
	for _, it := range tokenize(s, nil) {
		if it.kind == itemCode {
			continue
		}
		st := it.st
		if st.fg != "" {
			st.fg = colorHex(st.fg)
		}
		if st.bg != "" {
			st.bg = colorHex(st.bg)
		}
		out = append(out, styledRune{s[it.start:it.end], st})
	}
	return out
}

func splitInputLines(s string) []string {
	return strings.FieldsFunc(strings.ReplaceAll(s, "\r\n", "\n"), func(r rune) bool { return r == '\n' || r == '\r' })
}

// checkSplit verifies SplitLines' guarantees for one call.
func checkSplit(t *testing.T, text string, max int, pieces []string) {
	t.Helper()
	if max <= 0 {
		if len(pieces) != 0 {
			t.Fatalf("max %d: got %q", max, pieces)
		}
		return
	}
	for _, p := range pieces {
		if len(p) > max {
			t.Fatalf("SplitLines(%q, %d): piece %q is %d bytes", text, max, p, len(p))
		}
		if !utf8.ValidString(p) || strings.ContainsAny(p, "\r\n") || !hasVisible(p) {
			t.Fatalf("SplitLines(%q, %d): bad piece %q", text, max, p)
		}
	}
	// Too small a limit may replace runes or lose formatting: only the
	// limits above apply.
	if max < 4 {
		return
	}
	exactStyle := max >= 32
	k := 0
	for _, line := range splitInputLines(sanitizeUTF8(text)) {
		orig := styledRunes(line)
		pos := 0
		rest := func() bool { // only spaces left?
			for _, r := range orig[pos:] {
				if r.r != " " {
					return false
				}
			}
			return true
		}
		for !rest() {
			if k >= len(pieces) {
				t.Fatalf("SplitLines(%q, %d) = %q: line %q not fully covered", text, max, pieces, line)
			}
			pr := styledRunes(pieces[k])
			matched := false
			for skip := 0; pos+skip+len(pr) <= len(orig); skip++ {
				if skip > 0 && orig[pos+skip-1].r != " " {
					break
				}
				ok := true
				for m := range pr {
					o := orig[pos+skip+m]
					if o.r != pr[m].r {
						ok = false
						break
					}
					if exactStyle && !sameStyle(o.st, pr[m].st) {
						t.Fatalf("SplitLines(%q, %d) = %q: piece %q rune %q has style %+v, want %+v", text, max, pieces, pieces[k], pr[m].r, pr[m].st, o.st)
					}
				}
				if ok {
					pos += skip + len(pr)
					matched = true
					break
				}
			}
			if !matched {
				t.Fatalf("SplitLines(%q, %d) = %q: piece %q does not continue line %q at %d", text, max, pieces, pieces[k], line, pos)
			}
			k++
		}
	}
	if k != len(pieces) {
		t.Fatalf("SplitLines(%q, %d) = %q: %d extra pieces", text, max, pieces, len(pieces)-k)
	}
}

func sameStyle(a, b style) bool {
	// A hex background under the default foreground can only be
	// approximated when reopened, and the approximation carries on.
	if a.bg != b.bg && strings.HasPrefix(a.bg, "#") && colorHex(nearestMIRC(a.bg)) == b.bg {
		a.bg = b.bg
	}
	return a == b
}

// checkIRCLines verifies MatrixToIRC output: no control characters but the
// formatting codes, and every line ending with its formatting closed.
func checkIRCLines(t *testing.T, out string, closed bool) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		for _, r := range line {
			if (r < 0x20 && !isControl(byte(r)) && r != '\t') || r == 0x7f {
				t.Fatalf("control character %q in %q", r, out)
			}
		}
		if !closed {
			continue
		}
		var st style
		for i := 0; i < len(line); {
			if isControl(line[i]) {
				i, st = parseCode(line, i, st)
			} else {
				i++
			}
		}
		if !st.isZero() {
			t.Fatalf("line %q of %q leaves formatting open: %+v", line, out, st)
		}
	}
}

var voidElements = map[string]bool{"br": true, "img": true, "hr": true}

// tagSeq lists the start and end tags of an HTML string, checking that
// they balance.
func tagSeq(t *testing.T, s string) []string {
	t.Helper()
	var seq, stack []string
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		switch z.Next() {
		case html.ErrorToken:
			if len(stack) != 0 {
				t.Fatalf("unclosed tags %v in %q", stack, s)
			}
			return seq
		case html.StartTagToken:
			name, _ := z.TagName()
			seq = append(seq, "<"+string(name))
			if !voidElements[string(name)] {
				stack = append(stack, string(name))
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			seq = append(seq, "/"+string(name))
			if len(stack) == 0 || stack[len(stack)-1] != string(name) {
				t.Fatalf("misnested </%s> (open %v) in %q", name, stack, s)
			}
			stack = stack[:len(stack)-1]
		case html.SelfClosingTagToken:
			name, _ := z.TagName()
			seq = append(seq, "<"+string(name))
		}
	}
}

var bodyContext = &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body}

// checkHTML verifies that s is well-formed: tags balance, and parsing and
// re-rendering it with x/net/html keeps the same tags.
func checkHTML(t *testing.T, s string) {
	t.Helper()
	if s == "" {
		return
	}
	if !utf8.ValidString(s) {
		t.Fatalf("invalid UTF-8 in HTML %q", s)
	}
	want := tagSeq(t, s)
	nodes, err := html.ParseFragment(strings.NewReader(s), bodyContext)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	var buf bytes.Buffer
	for _, n := range nodes {
		if err := html.Render(&buf, n); err != nil {
			t.Fatalf("render %q: %v", s, err)
		}
	}
	if got := tagSeq(t, buf.String()); strings.Join(got, "") != strings.Join(want, "") {
		t.Fatalf("HTML %q re-rendered as %q", s, buf.String())
	}
}

// htmlText returns the text a browser would show for s, with <br> as "\n".
func htmlText(t *testing.T, s string) string {
	nodes, err := html.ParseFragment(strings.NewReader(s), bodyContext)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		switch {
		case n.Type == html.TextNode:
			b.WriteString(n.Data)
		case n.Type == html.ElementNode && n.Data == "br":
			b.WriteString("\n")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	for _, n := range nodes {
		rec(n)
	}
	return b.String()
}
