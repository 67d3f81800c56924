package bridge

// People, double puppets: a user's own remote actions sent as their real Matrix
// account (appservice-token login), marked so they are never bridged back.

import (
	"context"
	"strings"

	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
)

// doublePuppetIntent returns an intent acting as the user's real Matrix account, or nil
// when double puppeting is not configured for their server. It uses the appservice
// token method: a second registration whose non-exclusive namespace covers real users.
// Everything sent through it carries the bridge's double-puppet marker, which the
// transaction stream recognises so it is never bridged back.
func (br *Bridge) doublePuppetIntent(ctx context.Context, user id.UserID) *appservice.IntentAPI {
	secret, ok := br.Config.DoublePuppet.Secrets[user.Homeserver()]
	if !ok || !strings.HasPrefix(secret, "as_token:") {
		return nil
	}
	homeserverURL := ""
	if user.Homeserver() != br.Config.Homeserver.Domain {
		// Only the bridge's own homeserver is reachable on small private deployments;
		// other servers would need discovery, which we do not do.
		return nil
	}
	client, err := br.AS.NewExternalMautrixClient(user, strings.TrimPrefix(secret, "as_token:"), homeserverURL)
	if err != nil {
		br.Log.Warn().Err(err).Stringer("user_id", user).Msg("Setting up double puppet failed")
		return nil
	}
	client.SetAppServiceUserID = true
	intent := br.AS.NewIntentAPI("custom")
	intent.Client = client
	intent.Localpart = user.Localpart()
	intent.UserID = user
	intent.IsCustomPuppet = true
	return intent
}
