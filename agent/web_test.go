package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// startAgentWeb is startAgent with an exporter-toolkit web configuration
// (empty: plain HTTP). The URL is https:// when webConfigFile is set.
func startAgentWeb(t testing.TB, configFile, webConfigFile string) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{config: configFile, reload: make(chan struct{}, 1), logs: &syncBuffer{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		ra.done <- Run(ctx, Options{
			ConfigFile:    configFile,
			WebConfigFile: webConfigFile,
			Logger:        NewLogger(ra.logs, -4),
			Reload:        ra.reload,
			WorkerCommand: testWorker(),
			Started:       func(a string) { addr <- a },
			Polled:        func([]string) { ra.polls.Add(1) },
		})
	}()
	scheme := "http://"
	if webConfigFile != "" {
		scheme = "https://"
	}
	select {
	case a := <-addr:
		ra.url = scheme + a
	case err := <-ra.done:
		t.Fatalf("agent did not start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not start listening within 20s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ra.done:
			if err != nil {
				t.Errorf("agent shutdown: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not shut down within 20s")
		}
		if t.Failed() {
			t.Logf("agent logs:\n%s", ra.logs.String())
		}
	})
	return ra
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, all as PEM files in dir.
type testPKI struct {
	caFile, serverCert, serverKey string
	ca                            *x509.CertPool
	client                        tls.Certificate
}

func newTestPKI(t *testing.T, dir, name string) *testPKI {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	p := &testPKI{
		caFile:     filepath.Join(dir, name+"-ca.crt"),
		serverCert: filepath.Join(dir, name+"-server.crt"),
		serverKey:  filepath.Join(dir, name+"-server.key"),
		ca:         x509.NewCertPool(),
	}
	p.ca.AddCert(caCert)
	srvCert, srvKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	cliCert, cliKey := issue(3, "prometheus", x509.ExtKeyUsageClientAuth, nil)
	for f, b := range map[string][]byte{
		p.caFile:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		p.serverCert: srvCert,
		p.serverKey:  srvKey,
	} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if p.client, err = tls.X509KeyPair(cliCert, cliKey); err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// httpsClient trusts ca and presents cert (if any) whatever CAs the server
// asks for (Go's client would otherwise send no certificate at all when
// cert is not from one of them).
func httpsClient(ca *x509.CertPool, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// fetch GETs url with basic auth user:password (none when user is empty).
func fetch(c *http.Client, url, user, password string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestMetricsOverTLSWithClientCertAndBasicAuth serves /metrics through
// exporter-toolkit's --web.config.file: TLS with a required client
// certificate from our CA, plus a bcrypt basic-auth user.
func TestMetricsOverTLSWithClientCertAndBasicAuth(t *testing.T) {
	s := newSite(t, 1, "")
	pki := newTestPKI(t, s.dir, "site")
	other := newTestPKI(t, s.dir, "other") // a CA the agent does not trust

	const user, password = "prometheus", "correct horse battery staple"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(s.dir, "web.yml")
	web := fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: %s
basic_auth_users:
  %s: %s
`, pki.serverCert, pki.serverKey, pki.caFile, user, hash)
	if err := os.WriteFile(webConfig, []byte(web), 0o600); err != nil {
		t.Fatal(err)
	}
	ra := startAgentWeb(t, s.config, webConfig)
	if !strings.HasPrefix(ra.url, "https://127.0.0.1:") {
		t.Fatalf("agent URL %q, want https://127.0.0.1:PORT", ra.url)
	}
	good := httpsClient(pki.ca, &pki.client)

	// The right certificate and password: the metrics, once polled.
	waitUntil(t, 15*time.Second, "hsm_up over TLS", func() bool {
		code, body, err := fetch(good, ra.url+"/metrics", user, password)
		if err != nil {
			t.Fatalf("GET /metrics with client certificate and password: %v", err)
		}
		if code != http.StatusOK {
			t.Fatalf("GET /metrics with client certificate and password: status %d: %s", code, body)
		}
		return strings.Contains(body, fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 1`, s.fleet.Tokens[0].Serial))
	})

	// The right certificate, a wrong or no password: 401.
	for _, pw := range []struct{ user, password string }{{user, "wrong password"}, {"admin", password}, {"", ""}} {
		code, body, err := fetch(good, ra.url+"/metrics", pw.user, pw.password)
		if err != nil || code != http.StatusUnauthorized {
			t.Errorf("user %q with a wrong password: status %d, err %v, want 401", pw.user, code, err)
		}
		if strings.Contains(body, "hsm_up") {
			t.Errorf("user %q with a wrong password got metrics", pw.user)
		}
	}

	// No client certificate, or one from another CA: the TLS handshake fails.
	for name, c := range map[string]*http.Client{
		"no client certificate":                httpsClient(pki.ca, nil),
		"client certificate from another CA":   httpsClient(pki.ca, &other.client),
		"client that does not trust the agent": httpsClient(other.ca, &pki.client),
	} {
		code, _, err := fetch(c, ra.url+"/metrics", user, password)
		if err == nil {
			t.Errorf("%s: status %d, want a TLS handshake failure", name, code)
			continue
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v, want a certificate error", name, err)
		}
	}

	// Plain HTTP on the TLS port gets no metrics.
	plain := &http.Client{Timeout: 5 * time.Second}
	code, body, err := fetch(plain, "http://"+strings.TrimPrefix(ra.url, "https://")+"/metrics", user, password)
	if err == nil && (code == http.StatusOK || strings.Contains(body, "hsm_")) {
		t.Errorf("plain HTTP: status %d with metrics, want a failure", code)
	}

	if strings.Contains(ra.logs.String(), password) {
		t.Error("the basic-auth password appears in the agent's logs")
	}
}
