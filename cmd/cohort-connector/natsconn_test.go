package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cohort-connector/cohort-connector/config"
)

const (
	testNATSPassword = "nats-pw-SECRET-42"
	testNATSToken    = "nats-token-SECRET-43"
)

// startNATS starts a loopback nats-server with opts, stopped at cleanup.
func startNATS(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(5*time.Second), "nats-server did not start")
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// connectWith builds the options for cfg and makes one round trip.
func connectWith(url string, cfg config.Config) error {
	opts, err := natsOptions(cfg, "natsconn-test")
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, append(opts, nats.Timeout(2*time.Second))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	return nc.Flush()
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, all as PEM files.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalECPrivateKey(k)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	var p testPKI
	p.ca = writeFile(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	c, k := leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth)
	p.serverCert, p.serverKey = writeFile(t, dir, "server.pem", c), writeFile(t, dir, "server-key.pem", k)
	c, k = leaf(3, "cohort-connector", x509.ExtKeyUsageClientAuth)
	p.clientCert, p.clientKey = writeFile(t, dir, "client.pem", c), writeFile(t, dir, "client-key.pem", k)
	return p
}

// writeNkeySeed creates an NKey user and writes its seed to a file.
func writeNkeySeed(t *testing.T, dir, name string) (pub, seedFile string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err = kp.PublicKey()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	return pub, writeFile(t, dir, name, seed)
}

// writeCreds writes a .creds file of a new user signed by account.
func writeCreds(t *testing.T, dir, name string, account nkeys.KeyPair) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	require.NoError(t, err)
	upub, err := ukp.PublicKey()
	require.NoError(t, err)
	ujwt, err := jwt.NewUserClaims(upub).Encode(account)
	require.NoError(t, err)
	seed, err := ukp.Seed()
	require.NoError(t, err)
	creds, err := jwt.FormatUserConfig(ujwt, seed)
	require.NoError(t, err)
	return writeFile(t, dir, name, creds)
}

// operatorServer returns the options of a server in operator (JWT) mode
// that knows one account, and that account's key.
func operatorServer(t *testing.T) (*server.Options, nkeys.KeyPair) {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	require.NoError(t, err)
	opub, err := okp.PublicKey()
	require.NoError(t, err)
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(okp)
	require.NoError(t, err)
	oc, err := jwt.DecodeOperatorClaims(ojwt)
	require.NoError(t, err)

	akp, err := nkeys.CreateAccount()
	require.NoError(t, err)
	apub, err := akp.PublicKey()
	require.NoError(t, err)
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	require.NoError(t, err)
	resolver := &server.MemAccResolver{}
	require.NoError(t, resolver.Store(apub, ajwt))
	return &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver}, akp
}

func TestNATSOptionsConnectWithEachAuthentication(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	otherPKI := newTestPKI(t, t.TempDir())
	nkeyPub, nkeySeed := writeNkeySeed(t, dir, "user.nk")
	_, otherSeed := writeNkeySeed(t, dir, "other.nk")
	jwtOpts, account := operatorServer(t)
	goodCreds := writeCreds(t, dir, "good.creds", account)
	strangerAccount, err := nkeys.CreateAccount() // unknown to the server
	require.NoError(t, err)
	badCreds := writeCreds(t, dir, "bad.creds", strangerAccount)
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true,
	})
	require.NoError(t, err)

	tests := []struct {
		name   string
		server *server.Options
		good   func(c *config.Config)
		bad    map[string]func(c *config.Config)
	}{
		{
			name:   "user and password",
			server: &server.Options{Username: "connector", Password: testNATSPassword},
			good:   func(c *config.Config) { c.NATSUser, c.NATSPassword = "connector", testNATSPassword },
			bad: map[string]func(c *config.Config){
				"wrong password": func(c *config.Config) { c.NATSUser, c.NATSPassword = "connector", "wrong" },
				"no password":    func(*config.Config) {},
			},
		},
		{
			name:   "token",
			server: &server.Options{Authorization: testNATSToken},
			good:   func(c *config.Config) { c.NATSToken = testNATSToken },
			bad: map[string]func(c *config.Config){
				"wrong token": func(c *config.Config) { c.NATSToken = "wrong" },
			},
		},
		{
			name:   "nkey",
			server: &server.Options{Nkeys: []*server.NkeyUser{{Nkey: nkeyPub}}},
			good:   func(c *config.Config) { c.NATSNKeyFile = nkeySeed },
			bad: map[string]func(c *config.Config){
				"another user's seed": func(c *config.Config) { c.NATSNKeyFile = otherSeed },
			},
		},
		{
			name:   "creds file (JWT)",
			server: jwtOpts,
			good:   func(c *config.Config) { c.NATSCredsFile = goodCreds },
			bad: map[string]func(c *config.Config){
				"a user of an unknown account": func(c *config.Config) { c.NATSCredsFile = badCreds },
			},
		},
		{
			name:   "mutual TLS",
			server: &server.Options{TLS: true, TLSVerify: true, TLSConfig: tlsConfig, TLSTimeout: 2},
			good: func(c *config.Config) {
				c.NATSTLSCAFile, c.NATSTLSCertFile, c.NATSTLSKeyFile = pki.ca, pki.clientCert, pki.clientKey
			},
			bad: map[string]func(c *config.Config){
				"no client certificate": func(c *config.Config) { c.NATSTLSCAFile = pki.ca },
				"a client certificate of another CA": func(c *config.Config) {
					c.NATSTLSCAFile, c.NATSTLSCertFile, c.NATSTLSKeyFile = pki.ca, otherPKI.clientCert, otherPKI.clientKey
				},
				"a CA that did not sign the server": func(c *config.Config) {
					c.NATSTLSCAFile, c.NATSTLSCertFile, c.NATSTLSKeyFile = otherPKI.ca, pki.clientCert, pki.clientKey
				},
				"no TLS at all": func(*config.Config) {},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startNATS(t, tt.server)
			url := s.ClientURL()

			cfg := config.Default()
			cfg.NATSURL = url
			tt.good(&cfg)
			require.NoError(t, connectWith(url, cfg), "the right settings connect")

			for name, change := range tt.bad {
				t.Run("fails with "+name, func(t *testing.T) {
					cfg := config.Default()
					cfg.NATSURL = url
					change(&cfg)
					err := connectWith(url, cfg)
					require.Error(t, err)
					if tt.server.TLSConfig == nil {
						assert.ErrorIs(t, err, nats.ErrAuthorization)
					} // TLS failures vary: unknown authority, certificate required, broken pipe
					assert.NotContains(t, err.Error(), testNATSPassword)
					assert.NotContains(t, err.Error(), testNATSToken)
				})
			}
		})
	}
}

func TestNATSOptionsSettings(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	apply := func(t *testing.T, cfg config.Config) nats.Options {
		t.Helper()
		opts, err := natsOptions(cfg, "cohort-connector")
		require.NoError(t, err)
		var o nats.Options
		for _, opt := range opts {
			require.NoError(t, opt(&o))
		}
		return o
	}

	t.Run("without auth or TLS it names the connection and reconnects forever", func(t *testing.T) {
		o := apply(t, config.Default())
		assert.Equal(t, "cohort-connector", o.Name)
		assert.Equal(t, -1, o.MaxReconnect)
		assert.Equal(t, time.Second, o.ReconnectWait)
		assert.False(t, o.Secure)
		assert.Empty(t, o.User)
		assert.Empty(t, o.Token)
		assert.Nil(t, o.TLSConfig)
	})

	t.Run("any TLS file requires TLS", func(t *testing.T) {
		for _, set := range []func(c *config.Config){
			func(c *config.Config) { c.NATSTLSCAFile = pki.ca },
			func(c *config.Config) { c.NATSTLSCertFile, c.NATSTLSKeyFile = pki.clientCert, pki.clientKey },
		} {
			cfg := config.Default()
			set(&cfg)
			o := apply(t, cfg)
			assert.True(t, o.Secure)
			assert.NotNil(t, o.TLSConfig)
		}
	})

	t.Run("bad files are reported with their variable, without their content", func(t *testing.T) {
		garbage := writeFile(t, dir, "garbage", []byte(testNATSToken))
		for variable, set := range map[string]func(c *config.Config){
			"CONNECTOR_NATS_NKEY_FILE":     func(c *config.Config) { c.NATSNKeyFile = garbage },
			"CONNECTOR_NATS_TLS_CA_FILE":   func(c *config.Config) { c.NATSTLSCAFile = garbage },
			"CONNECTOR_NATS_TLS_CERT_FILE": func(c *config.Config) { c.NATSTLSCertFile, c.NATSTLSKeyFile = garbage, pki.clientKey },
		} {
			cfg := config.Default()
			set(&cfg)
			_, err := natsOptions(cfg, "x")
			require.Error(t, err, variable)
			assert.Contains(t, err.Error(), variable)
			assert.NotContains(t, err.Error(), testNATSToken)
		}
	})
}
