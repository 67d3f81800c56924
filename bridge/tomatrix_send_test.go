package bridge

import (
	"testing"

	"maunium.net/go/mautrix/event"
)

func TestMarkdownNotice(t *testing.T) {
	cases := []struct{ text, html string }{
		{"Send `help` to see what you can do.", "Send <code>help</code> to see what you can do."},
		{"plain words, nothing to render", ""},
		{"no <b>raw</b> HTML passes", "no &lt;b&gt;raw&lt;/b&gt; HTML passes"},
	}
	for _, c := range cases {
		got := markdownNotice(c.text)
		if got.MsgType != event.MsgNotice || got.Body != c.text || got.FormattedBody != c.html {
			t.Errorf("markdownNotice(%q) = %q / %q, want body as written and %q", c.text, got.Body, got.FormattedBody, c.html)
		}
	}
}
