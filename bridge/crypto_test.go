package bridge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/appservice"

	"github.com/passerelle/passerelle/bridge/config"
)

// TestStartCryptoWithoutAppserviceLogin: a homeserver that offers no way for the bot to
// get a device makes the start fail with a clear error when encryption is required,
// and lets the bridge run without encryption otherwise.
func TestStartCryptoWithoutAppserviceLogin(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/login") && r.Method == http.MethodGet {
			_, _ = w.Write([]byte(`{"flows":[{"type":"m.login.password"}]}`))
			return
		}
		http.NotFound(w, r)
	}))
	defer hs.Close()
	for _, require := range []bool{false, true} {
		cfg := testConfig()
		cfg.Homeserver.Address = hs.URL
		cfg.Database = config.DatabaseConfig{Type: "sqlite", URI: filepath.Join(t.TempDir(), "passerelle.db")}
		cfg.AppService.ID, cfg.AppService.ASToken, cfg.AppService.HSToken = "passerelle", "as-token", "hs-token"
		cfg.AppService.Bot.Username = "passerelle"
		cfg.Bridge.Encryption = config.EncryptionConfig{Allow: true, Require: require}
		reg := &appservice.Registration{ID: "passerelle", AppToken: "as-token", ServerToken: "hs-token", SenderLocalpart: "passerelle"}
		ctx := context.Background()
		br, err := New(ctx, cfg, reg, nil, nil, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		err = br.startCrypto(ctx)
		switch {
		case require && (err == nil || !strings.Contains(err.Error(), "offers no appservice login")):
			t.Errorf("with require: start error %v; want one saying the homeserver offers no appservice login", err)
		case !require && (err != nil || br.crypto != nil):
			t.Errorf("without require: start error %v, crypto %v; want a start without encryption", err, br.crypto)
		}
		br.DB.Close()
	}
}
