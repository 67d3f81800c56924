package whatsapp

import (
	"context"
	"errors"
	"fmt"
	"html"
	"mime"
	"os"
	"strings"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"maunium.net/go/mautrix/event"

	"github.com/passerelle/passerelle/bridge"
)

// unsupportedNotice is shown for WhatsApp messages the bridge cannot render, so the
// user knows to look on the phone instead of missing them.
const unsupportedNotice = "This WhatsApp message type is not supported by the bridge; open WhatsApp on your phone to see it."

// contentFromWA converts a WhatsApp message to the network-neutral form: text with
// formatting and mentions, media downloaded, locations, contacts, and readable
// notices for what has no Matrix equivalent.
func (s *session) contentFromWA(ctx context.Context, msg *waE2E.Message) *bridge.MessageContent {
	ci := contextInfo(msg)
	var mc *bridge.MessageContent
	switch {
	case msg.Conversation != nil:
		mc = s.textFromWA(ctx, msg.GetConversation(), nil)
	case msg.ExtendedTextMessage != nil:
		mc = s.textFromWA(ctx, msg.GetExtendedTextMessage().GetText(), ci)
	case msg.ImageMessage != nil:
		m := msg.GetImageMessage()
		mc = s.mediaFromWA(ctx, m, event.MsgImage, m.GetMimetype(), "image", m.GetCaption(), ci, m.GetFileLength())
		if mc.Media != nil {
			mc.Media.Width, mc.Media.Height = int(m.GetWidth()), int(m.GetHeight())
		}
	case msg.StickerMessage != nil:
		m := msg.GetStickerMessage()
		mc = s.mediaFromWA(ctx, m, bridge.MsgSticker, m.GetMimetype(), "sticker", "", ci, m.GetFileLength())
		if mc.Media != nil {
			mc.Media.Width, mc.Media.Height = int(m.GetWidth()), int(m.GetHeight())
		}
	case msg.VideoMessage != nil || msg.PtvMessage != nil:
		m := msg.GetVideoMessage()
		if m == nil {
			m = msg.GetPtvMessage()
		}
		mc = s.mediaFromWA(ctx, m, event.MsgVideo, m.GetMimetype(), "video", m.GetCaption(), ci, m.GetFileLength())
		if mc.Media != nil {
			mc.Media.Width, mc.Media.Height = int(m.GetWidth()), int(m.GetHeight())
			mc.Media.DurationMS = int(m.GetSeconds()) * 1000
		}
	case msg.AudioMessage != nil:
		m := msg.GetAudioMessage()
		name := "audio"
		if m.GetPTT() {
			name = "voice message"
		}
		mc = s.mediaFromWA(ctx, m, event.MsgAudio, m.GetMimetype(), name, "", ci, m.GetFileLength())
		if mc.Media != nil {
			mc.Media.DurationMS = int(m.GetSeconds()) * 1000
			mc.Media.Voice = m.GetPTT()
		}
	case msg.DocumentMessage != nil:
		m := msg.GetDocumentMessage()
		mc = s.mediaFromWA(ctx, m, event.MsgFile, m.GetMimetype(), m.GetFileName(), m.GetCaption(), ci, m.GetFileLength())
		if mc.Media != nil && m.GetFileName() != "" {
			mc.Media.FileName = m.GetFileName()
		}
	case msg.LocationMessage != nil:
		m := msg.GetLocationMessage()
		mc = locationContent(m.GetDegreesLatitude(), m.GetDegreesLongitude(), m.GetName(), m.GetAddress(), false)
	case msg.LiveLocationMessage != nil:
		m := msg.GetLiveLocationMessage()
		mc = locationContent(m.GetDegreesLatitude(), m.GetDegreesLongitude(), m.GetCaption(), "", true)
	case msg.ContactMessage != nil:
		m := msg.GetContactMessage()
		mc = contactContent([]*waE2E.ContactMessage{m})
	case msg.ContactsArrayMessage != nil:
		mc = contactContent(msg.GetContactsArrayMessage().GetContacts())
	case pollOf(msg) != nil:
		mc = pollContent(pollOf(msg))
	case msg.GroupInviteMessage != nil:
		m := msg.GetGroupInviteMessage()
		mc = noticeContent(fmt.Sprintf("Invitation to the WhatsApp group %q; open WhatsApp on your phone to join it.", m.GetGroupName()))
	default:
		mc = noticeContent(unsupportedNotice)
	}
	if ci.GetStanzaID() != "" {
		mc.ReplyTo = bridge.RemoteMessageID(ci.GetStanzaID())
	}
	return mc
}

// textFromWA converts WhatsApp markup and @-mentions.
func (s *session) textFromWA(ctx context.Context, text string, ci *waE2E.ContextInfo) *bridge.MessageContent {
	mentioned := map[string]types.JID{}
	for _, raw := range ci.GetMentionedJID() {
		if jid, err := types.ParseJID(raw); err == nil {
			mentioned[jid.User] = jid
		}
	}
	mc := &bridge.MessageContent{MsgType: event.MsgText}
	var users []string
	mc.Body, mc.FormattedBody, users = waToMatrix(text, func(user string) (string, string, bool) {
		jid, ok := mentioned[user]
		if !ok {
			return "", "", false
		}
		jid = canonicalUser(ctx, s.client.Device(), jid)
		if jid.User == s.ownJID().User {
			return s.login.UserMXID.String(), s.login.UserMXID.Localpart(), true
		}
		return s.c.host.GhostMXID(ghostID(jid)).String(), s.contactName(ctx, jid, ""), true
	})
	for _, user := range users {
		jid := canonicalUser(ctx, s.client.Device(), mentioned[user])
		if jid.User == s.ownJID().User {
			mc.MentionedMatrixUsers = append(mc.MentionedMatrixUsers, s.login.UserMXID)
		} else {
			mc.Mentions = append(mc.Mentions, ghostID(jid))
		}
	}
	return mc
}

// mediaFromWA downloads a media message. A failed or refused download becomes a
// notice that says so, with the caption kept.
func (s *session) mediaFromWA(ctx context.Context, m whatsmeow.DownloadableMessage, msgType event.MessageType, mimeType, name, caption string,
	ci *waE2E.ContextInfo, size uint64) *bridge.MessageContent {
	fileName := name
	if !strings.Contains(fileName, ".") {
		if exts, _ := mime.ExtensionsByType(mimeType); len(exts) > 0 {
			fileName += exts[len(exts)-1]
		}
	}
	var mc *bridge.MessageContent
	if caption != "" {
		mc = s.textFromWA(ctx, caption, ci)
	} else {
		mc = &bridge.MessageContent{Body: fileName}
	}
	mc.MsgType = msgType
	spool, notice := s.downloadToSpool(ctx, m, name, size)
	if notice != nil {
		return notice
	}
	mc.Media = &bridge.Media{FileName: fileName, MimeType: mimeType, Size: int(spool.size), Spool: spool.name}
	return mc
}

// spooled is a downloaded file in the bridge's media spool.
type spooled struct {
	name string
	size int64
}

// downloadToSpool streams a media message into the media spool, never holding it
// whole. The spool file refuses to grow past max_media_bytes (with room for the
// encryption's padding and MAC), so a sender who declared a small file cannot send a
// large one. A refusal or failure is the notice to bridge instead.
func (s *session) downloadToSpool(ctx context.Context, m whatsmeow.DownloadableMessage, name string, declared uint64) (spooled, *bridge.MessageContent) {
	limit := int64(s.c.cfg.MaxMediaBytes)
	tooLarge := func(size int64) *bridge.MessageContent {
		return noticeContent(fmt.Sprintf("A %s of %d MiB was not bridged: it is larger than the bridge's limit of %d MiB. Open WhatsApp on your phone to see it.",
			name, size>>20, limit>>20))
	}
	unstored := noticeContent(fmt.Sprintf("A %s could not be bridged: the bridge could not store it. Open WhatsApp on your phone to see it.", name))
	if declared > uint64(limit) {
		return spooled{}, tooLarge(int64(declared))
	}
	f, err := s.c.host.CreateMediaFile(limit + mediaCipherOverhead)
	if err != nil {
		s.log.Error().Err(err).Msg("Creating a media spool file failed")
		return spooled{}, unstored
	}
	err = s.client.DownloadToFile(ctx, m, f)
	var got int64
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil {
			got = st.Size()
		}
	}
	switch {
	case errors.Is(err, bridge.ErrMediaTooLarge) || (err == nil && got > limit):
		f.Discard()
		s.log.Warn().Uint64("declared_size", declared).Msg("A WhatsApp file was larger than it declared; refused")
		return spooled{}, tooLarge(max(got, limit+1))
	case err != nil:
		f.Discard()
		s.log.Warn().Err(err).Msg("Downloading WhatsApp media failed")
		return spooled{}, noticeContent(fmt.Sprintf("A %s could not be downloaded from WhatsApp (%v). Open WhatsApp on your phone to see it.", name, err))
	}
	if err = f.Close(); err != nil {
		f.Discard()
		s.log.Error().Err(err).Msg("Closing a media spool file failed")
		return spooled{}, unstored
	}
	return spooled{name: f.SpoolName(), size: got}, nil
}

// mediaCipherOverhead is what WhatsApp's media encryption adds to a file (up to a
// block of padding and a 10-byte MAC), allowed while the ciphertext is downloaded.
const mediaCipherOverhead = 32

// locationContent is an m.location message with a readable body and a map link.
func locationContent(lat, long float64, name, address string, live bool) *bridge.MessageContent {
	label := "Location"
	if live {
		label = "Live location (only the start is shown here)"
	}
	parts := []string{label}
	if name != "" {
		parts = append(parts, name)
	}
	if address != "" {
		parts = append(parts, address)
	}
	geo := fmt.Sprintf("geo:%.6f,%.6f", lat, long)
	link := fmt.Sprintf("https://www.openstreetmap.org/?mlat=%.6f&mlon=%.6f", lat, long)
	body := strings.Join(parts, ": ") + " — " + link
	return &bridge.MessageContent{MsgType: event.MsgLocation, Body: body, GeoURI: geo}
}

// contactContent shares contact cards as a .vcf file, named in the body.
func contactContent(contacts []*waE2E.ContactMessage) *bridge.MessageContent {
	var names []string
	var vcards strings.Builder
	for _, c := range contacts {
		names = append(names, c.GetDisplayName())
		vcards.WriteString(strings.TrimSpace(c.GetVcard()))
		vcards.WriteString("\r\n")
	}
	if strings.TrimSpace(vcards.String()) == "" {
		// Nothing to put in a file (a file event needs one).
		return noticeContent("A contact card with no details was shared: " + strings.Join(names, ", "))
	}
	fileName := "contacts.vcf"
	if len(names) == 1 && names[0] != "" {
		fileName = names[0] + ".vcf"
	}
	return &bridge.MessageContent{MsgType: event.MsgFile, Body: "Contact: " + strings.Join(names, ", "),
		Media: &bridge.Media{FileName: fileName, MimeType: "text/vcard", Data: []byte(vcards.String()), Size: vcards.Len()}}
}

// pollOf returns the poll a message creates, whichever version it uses.
func pollOf(msg *waE2E.Message) *waE2E.PollCreationMessage {
	for _, p := range []*waE2E.PollCreationMessage{msg.GetPollCreationMessage(), msg.GetPollCreationMessageV2(),
		msg.GetPollCreationMessageV3(), msg.GetPollCreationMessageV5()} {
		if p != nil {
			return p
		}
	}
	return nil
}

// pollContent renders a poll as a notice listing its options.
func pollContent(p *waE2E.PollCreationMessage) *bridge.MessageContent {
	var b, h strings.Builder
	fmt.Fprintf(&b, "Poll: %s\n", p.GetName())
	fmt.Fprintf(&h, "<p><strong>Poll:</strong> %s</p><ol>", html.EscapeString(p.GetName()))
	for i, o := range p.GetOptions() {
		fmt.Fprintf(&b, "%d. %s\n", i+1, o.GetOptionName())
		fmt.Fprintf(&h, "<li>%s</li>", html.EscapeString(o.GetOptionName()))
	}
	b.WriteString("(Vote on your phone: polls cannot be answered from Matrix.)")
	h.WriteString("</ol><p>(Vote on your phone: polls cannot be answered from Matrix.)</p>")
	return &bridge.MessageContent{MsgType: event.MsgNotice, Body: b.String(), FormattedBody: h.String()}
}

func noticeContent(text string) *bridge.MessageContent {
	return &bridge.MessageContent{MsgType: event.MsgNotice, Body: text}
}

// contextInfo finds the context (reply, mentions, expiration) of any message kind.
func contextInfo(msg *waE2E.Message) *waE2E.ContextInfo {
	switch {
	case msg.ExtendedTextMessage != nil:
		return msg.GetExtendedTextMessage().GetContextInfo()
	case msg.ImageMessage != nil:
		return msg.GetImageMessage().GetContextInfo()
	case msg.VideoMessage != nil:
		return msg.GetVideoMessage().GetContextInfo()
	case msg.PtvMessage != nil:
		return msg.GetPtvMessage().GetContextInfo()
	case msg.AudioMessage != nil:
		return msg.GetAudioMessage().GetContextInfo()
	case msg.DocumentMessage != nil:
		return msg.GetDocumentMessage().GetContextInfo()
	case msg.StickerMessage != nil:
		return msg.GetStickerMessage().GetContextInfo()
	case msg.LocationMessage != nil:
		return msg.GetLocationMessage().GetContextInfo()
	case msg.LiveLocationMessage != nil:
		return msg.GetLiveLocationMessage().GetContextInfo()
	case msg.ContactMessage != nil:
		return msg.GetContactMessage().GetContextInfo()
	case msg.ContactsArrayMessage != nil:
		return msg.GetContactsArrayMessage().GetContextInfo()
	}
	if p := pollOf(msg); p != nil {
		return p.GetContextInfo()
	}
	return nil
}

// contactName is the best name for a contact: the name saved in the phone's address
// book (with contact_names), then their own push name, then their business name, then
// the phone number.
func (s *session) contactName(ctx context.Context, jid types.JID, pushName string) string {
	if dev := s.client.Device(); dev != nil && dev.Contacts != nil {
		if info, err := dev.Contacts.GetContact(ctx, jid); err == nil && info.Found {
			switch {
			case info.FullName != "" && s.c.cfg.ContactNames:
				return info.FullName
			case info.PushName != "":
				return info.PushName
			case info.BusinessName != "":
				return info.BusinessName
			}
		}
	}
	if pushName != "" {
		return pushName
	}
	return fallbackName(jid)
}

// fallbackName is a contact's phone number, or their hidden ID when it is unknown.
func fallbackName(jid types.JID) string {
	if jid.Server == types.DefaultUserServer {
		return "+" + jid.User
	}
	return jid.User
}
