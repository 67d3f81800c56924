package ircconn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlsTestServer is testServer behind TLS with a fresh self-signed certificate.
func tlsTestServer(t *testing.T) (*testServer, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "irc.test"},
		DNSNames: []string{"irc.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, ln: ln, conns: make(chan *peer, 8)}
	var mu sync.Mutex
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			p := newPeer(t, nc)
			mu.Lock()
			s.all = append(s.all, p)
			mu.Unlock()
			s.conns <- p
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s, pool
}

// TestTLS: a TLS network is reached with certificate verification (the server name
// checked against the certificate), and a certificate that does not verify is refused.
func TestTLS(t *testing.T) {
	srv, pool := tlsTestServer(t)
	_, ev := newTestConn(t, Config{Addr: srv.addr(), Nick: "alice", TLS: true,
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "irc.test"}}, nil)
	p := srv.accept()
	p.handshake("alice")
	ev.waitFor(t, Connected)

	bad, _ := tlsTestServer(t)
	_, badEv := newTestConn(t, Config{Addr: bad.addr(), Nick: "bob", TLS: true,
		TLSConfig: &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "irc.test"}}, nil)
	got := badEv.waitFor(t, Disconnected)
	if got.Err == nil || !strings.Contains(got.Err.Error(), "TLS") {
		t.Fatalf("an unverifiable certificate gave %v, want a TLS error", got.Err)
	}
}
