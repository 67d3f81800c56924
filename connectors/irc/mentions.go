package irc

import (
	"html"
	"regexp"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/passerelle/passerelle/bridge"
)

// addMentions turns the nicks of Matrix users' puppets and of channel members named in
// a line into Matrix mentions: pills in the formatted body, and m.mentions so the
// person is notified.
func (n *network) addMentions(content *bridge.MessageContent, channel string) {
	type target struct {
		nick string
		mxid id.UserID
	}
	var targets []target
	n.mu.Lock()
	for _, p := range n.puppets {
		if p.nick != "" {
			targets = append(targets, target{nick: p.nick, mxid: p.login.UserMXID})
		}
	}
	var members []member
	if st := n.channels[n.fold(channel)]; st != nil {
		for _, m := range st.members {
			members = append(members, m)
		}
	}
	n.mu.Unlock()
	lower := strings.ToLower(content.Body)
	formatted := content.FormattedBody
	if formatted == "" {
		formatted = html.EscapeString(content.Body)
	}
	changed := false
	pill := func(nick string, mxid id.UserID) {
		re := nickPattern(nick)
		replaced := re.ReplaceAllStringFunc(formatted, func(m string) string {
			loc := re.FindStringSubmatchIndex(m)
			prefix, word, suffix := m[:loc[3]], m[loc[4]:loc[5]], m[loc[5]:]
			return prefix + `<a href="https://matrix.to/#/` + html.EscapeString(mxid.String()) + `">` + word + `</a>` + suffix
		})
		if replaced != formatted {
			formatted, changed = replaced, true
		}
	}
	for _, t := range targets {
		if strings.Contains(lower, strings.ToLower(t.nick)) && nickPattern(t.nick).MatchString(content.Body) {
			content.MentionedMatrixUsers = append(content.MentionedMatrixUsers, t.mxid)
			pill(html.EscapeString(t.nick), t.mxid)
		}
	}
	for _, m := range members {
		if n.bot != nil && n.bot.IsMe(m.nick) || len(m.nick) < 3 {
			continue // very short nicks match too many ordinary words
		}
		if _, puppet := n.byNickSafe(m.nick); puppet {
			continue
		}
		if strings.Contains(lower, strings.ToLower(m.nick)) && nickPattern(m.nick).MatchString(content.Body) {
			remote := n.userID(m.nick)
			content.Mentions = append(content.Mentions, remote)
			pill(html.EscapeString(m.nick), n.c.host.GhostMXID(remote))
		}
	}
	if changed {
		content.FormattedBody = formatted
	}
}

// nickPattern matches a nick as a word (case-insensitively), capturing it in group 2.
func nickPattern(nick string) *regexp.Regexp {
	return regexp.MustCompile(`(?i)(^|[\s,:;(<>])(` + regexp.QuoteMeta(nick) + `)($|[\s,:;.!?)<>])`)
}

// byNickSafe returns the puppet using a nick, if any.
func (n *network) byNickSafe(nick string) (*puppet, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.byNick[n.fold(nick)]
	return p, ok
}
