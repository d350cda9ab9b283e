package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	natsPassword = "hunter2-nats-password"
	natsToken    = "s3cr3t-nats-token"
)

// writeTLSFiles writes a self-signed certificate (which is also its own CA)
// and its key as PEM files and returns their paths.
func writeTLSFiles(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(cert, certPEM, 0o600))
	require.NoError(t, os.WriteFile(key, keyPEM, 0o600))
	return cert, cert, key
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// natsFiles are files for the NATS client variables.
type natsFiles struct {
	ca, cert, key, otherKey, creds, nkey, notPEM, dir string
}

func writeNATSFiles(t *testing.T) natsFiles {
	t.Helper()
	var f natsFiles
	f.ca, f.cert, f.key = writeTLSFiles(t)
	_, _, f.otherKey = writeTLSFiles(t)
	f.dir = t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(f.dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	// Load checks only that these are readable; their format is nats.go's
	// business (cmd/cohort-connector tests them against a server).
	f.creds = write("user.creds", "-----BEGIN NATS USER JWT-----\n...\n------END NATS USER JWT------\n")
	f.nkey = write("user.nk", "SUAEXAMPLESEED\n")
	f.notPEM = write("ca.txt", "not a certificate")
	return f
}

// externalNATSEnv is minimalEnv with an external NATS server.
func externalNATSEnv() map[string]string {
	env := minimalEnv()
	env["CONNECTOR_NATS_URL"] = "tls://nats.example.com:4222"
	return env
}

func TestLoadRejectsBadNATSClientConfiguration(t *testing.T) {
	f := writeNATSFiles(t)
	tests := []struct {
		name     string
		embedded bool // CONNECTOR_NATS_URL unset
		change   map[string]string
		want     []string // all in one problem line
	}{
		{
			name:   "a user without a password names the password",
			change: map[string]string{"CONNECTOR_NATS_USER": "connector"},
			want:   []string{"CONNECTOR_NATS_PASSWORD: required when CONNECTOR_NATS_USER is set"},
		},
		{
			name:   "a password without a user names the user",
			change: map[string]string{"CONNECTOR_NATS_PASSWORD": natsPassword},
			want:   []string{"CONNECTOR_NATS_USER: required when CONNECTOR_NATS_PASSWORD is set"},
		},
		{
			name:   "user/password with a token names both methods",
			change: map[string]string{"CONNECTOR_NATS_USER": "connector", "CONNECTOR_NATS_PASSWORD": natsPassword, "CONNECTOR_NATS_TOKEN": natsToken},
			want:   []string{"CONNECTOR_NATS_USER/CONNECTOR_NATS_PASSWORD, CONNECTOR_NATS_TOKEN: at most one NATS authentication method may be set"},
		},
		{
			name:   "a token, a creds file and an nkey file name all three",
			change: map[string]string{"CONNECTOR_NATS_TOKEN": natsToken, "CONNECTOR_NATS_CREDS_FILE": f.creds, "CONNECTOR_NATS_NKEY_FILE": f.nkey},
			want:   []string{"CONNECTOR_NATS_TOKEN, CONNECTOR_NATS_CREDS_FILE, CONNECTOR_NATS_NKEY_FILE: at most one"},
		},
		{
			name:   "a password alone is still a second method next to a creds file",
			change: map[string]string{"CONNECTOR_NATS_PASSWORD": natsPassword, "CONNECTOR_NATS_CREDS_FILE": f.creds},
			want:   []string{"CONNECTOR_NATS_USER/CONNECTOR_NATS_PASSWORD, CONNECTOR_NATS_CREDS_FILE: at most one"},
		},
		{
			name: "a token with user info in the URL is refused, since the URL would win",
			change: map[string]string{
				"CONNECTOR_NATS_URL":   "nats://connector:" + natsPassword + "@n1:4222",
				"CONNECTOR_NATS_TOKEN": natsToken,
			},
			want: []string{"CONNECTOR_NATS_TOKEN, CONNECTOR_NATS_URL (user info): at most one"},
		},
		{
			name:   "a missing creds file is named with its path",
			change: map[string]string{"CONNECTOR_NATS_CREDS_FILE": filepath.Join(f.dir, "missing.creds")},
			want:   []string{`CONNECTOR_NATS_CREDS_FILE: cannot read "` + filepath.Join(f.dir, "missing.creds") + `": no such file or directory`},
		},
		{
			name:   "an nkey file that is a directory is refused",
			change: map[string]string{"CONNECTOR_NATS_NKEY_FILE": f.dir},
			want:   []string{"CONNECTOR_NATS_NKEY_FILE: cannot read", "is a directory"},
		},
		{
			name:   "a CA file without a PEM certificate is refused",
			change: map[string]string{"CONNECTOR_NATS_TLS_CA_FILE": f.notPEM},
			want:   []string{"CONNECTOR_NATS_TLS_CA_FILE: no PEM certificate found in"},
		},
		{
			name:   "a missing CA file is refused",
			change: map[string]string{"CONNECTOR_NATS_TLS_CA_FILE": filepath.Join(f.dir, "nope.pem")},
			want:   []string{"CONNECTOR_NATS_TLS_CA_FILE: cannot read"},
		},
		{
			name:   "a client certificate without a key names the key",
			change: map[string]string{"CONNECTOR_NATS_TLS_CERT_FILE": f.cert},
			want:   []string{"CONNECTOR_NATS_TLS_KEY_FILE: required when CONNECTOR_NATS_TLS_CERT_FILE is set"},
		},
		{
			name:   "a client key without a certificate names the certificate",
			change: map[string]string{"CONNECTOR_NATS_TLS_KEY_FILE": f.key},
			want:   []string{"CONNECTOR_NATS_TLS_CERT_FILE: required when CONNECTOR_NATS_TLS_KEY_FILE is set"},
		},
		{
			name:   "a client certificate with the wrong key is refused",
			change: map[string]string{"CONNECTOR_NATS_TLS_CERT_FILE": f.cert, "CONNECTOR_NATS_TLS_KEY_FILE": f.otherKey},
			want:   []string{"CONNECTOR_NATS_TLS_CERT_FILE: with CONNECTOR_NATS_TLS_KEY_FILE: not a usable certificate and key"},
		},
		{
			name:     "a token with the embedded server is refused as a client setting",
			embedded: true,
			change:   map[string]string{"CONNECTOR_NATS_TOKEN": natsToken},
			want:     []string{"CONNECTOR_NATS_TOKEN: must not be set when CONNECTOR_NATS_URL is empty", "client of an external server"},
		},
		{
			name:     "a password with the embedded server is refused as a client setting",
			embedded: true,
			change:   map[string]string{"CONNECTOR_NATS_USER": "connector", "CONNECTOR_NATS_PASSWORD": natsPassword},
			want:     []string{"CONNECTOR_NATS_PASSWORD: must not be set when CONNECTOR_NATS_URL is empty", "external server"},
		},
		{
			name:     "a CA file with the embedded server is refused as a client setting",
			embedded: true,
			change:   map[string]string{"CONNECTOR_NATS_TLS_CA_FILE": f.ca},
			want:     []string{"CONNECTOR_NATS_TLS_CA_FILE: must not be set when CONNECTOR_NATS_URL is empty"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := externalNATSEnv()
			if tt.embedded {
				delete(env, "CONNECTOR_NATS_URL")
			}
			for k, v := range tt.change {
				env[k] = v
			}
			setEnv(t, env)

			got, err := Load()
			require.Error(t, err)
			assert.Equal(t, Config{}, got)
			assertProblem(t, err, tt.want...)
			for _, secret := range []string{natsPassword, natsToken, tokenA, tokenB} {
				assert.NotContains(t, err.Error(), secret)
			}
		})
	}

	t.Run("an unreadable file is refused", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads every file")
		}
		p := filepath.Join(t.TempDir(), "locked.creds")
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o000))
		env := externalNATSEnv()
		env["CONNECTOR_NATS_CREDS_FILE"] = p
		setEnv(t, env)
		_, err := Load()
		require.Error(t, err)
		assertProblem(t, err, "CONNECTOR_NATS_CREDS_FILE: cannot read", "permission denied")
	})
}

func TestLoadAcceptsNATSClientConfiguration(t *testing.T) {
	f := writeNATSFiles(t)
	tests := []struct {
		name   string
		change map[string]string
		check  func(t *testing.T, c Config)
	}{
		{
			name:   "user and password, trimmed like every value",
			change: map[string]string{"CONNECTOR_NATS_USER": " connector ", "CONNECTOR_NATS_PASSWORD": natsPassword + "\n"},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, "connector", c.NATSUser)
				assert.Equal(t, natsPassword, c.NATSPassword.Reveal())
			},
		},
		{
			name:   "a token",
			change: map[string]string{"CONNECTOR_NATS_TOKEN": natsToken},
			check:  func(t *testing.T, c Config) { assert.Equal(t, natsToken, c.NATSToken.Reveal()) },
		},
		{
			name:   "a creds file",
			change: map[string]string{"CONNECTOR_NATS_CREDS_FILE": f.creds},
			check:  func(t *testing.T, c Config) { assert.Equal(t, f.creds, c.NATSCredsFile) },
		},
		{
			name:   "an nkey seed file",
			change: map[string]string{"CONNECTOR_NATS_NKEY_FILE": f.nkey},
			check:  func(t *testing.T, c Config) { assert.Equal(t, f.nkey, c.NATSNKeyFile) },
		},
		{
			name:   "a CA file alone (server verification, no client certificate)",
			change: map[string]string{"CONNECTOR_NATS_TLS_CA_FILE": f.ca},
			check:  func(t *testing.T, c Config) { assert.Equal(t, f.ca, c.NATSTLSCAFile) },
		},
		{
			name: "a client certificate and key with a token",
			change: map[string]string{
				"CONNECTOR_NATS_TLS_CERT_FILE": f.cert, "CONNECTOR_NATS_TLS_KEY_FILE": f.key,
				"CONNECTOR_NATS_TOKEN": natsToken,
			},
			check: func(t *testing.T, c Config) {
				assert.Equal(t, f.cert, c.NATSTLSCertFile)
				assert.Equal(t, f.key, c.NATSTLSKeyFile)
			},
		},
		{
			name:   "user info in the URL alone is still accepted",
			change: map[string]string{"CONNECTOR_NATS_URL": "nats://connector:" + natsPassword + "@n1:4222", "CONNECTOR_NATS_TLS_CA_FILE": f.ca},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := requireLoads(t, externalNATSEnv(), tt.change)
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestNATSClientVariablesLoadAsEnvconfigReadsThem(t *testing.T) {
	f := writeNATSFiles(t)
	for _, method := range []map[string]string{
		{"CONNECTOR_NATS_TOKEN": natsToken},
		{"CONNECTOR_NATS_CREDS_FILE": f.creds},
		{"CONNECTOR_NATS_NKEY_FILE": f.nkey},
	} {
		env := externalNATSEnv()
		for k, v := range method {
			env[k] = v
		}
		setEnv(t, env)
		got, err := Load()
		require.NoError(t, err)
		var want Config
		require.NoError(t, envconfig.Process("CONNECTOR", &want))
		got.AccountList = nil
		assert.Equal(t, want, got)
	}
}

func TestNATSSecretsNeverPrint(t *testing.T) {
	f := writeNATSFiles(t)
	for _, method := range []map[string]string{
		{"CONNECTOR_NATS_USER": "connector", "CONNECTOR_NATS_PASSWORD": natsPassword},
		{"CONNECTOR_NATS_TOKEN": natsToken},
	} {
		env := externalNATSEnv()
		env["CONNECTOR_NATS_TLS_CA_FILE"] = f.ca
		for k, v := range method {
			env[k] = v
		}
		setEnv(t, env)
		c, err := Load()
		require.NoError(t, err)

		var buf bytes.Buffer
		log := zerolog.New(&buf)
		log.Info().Object("config", c).Send()
		var line struct{ Config map[string]any }
		require.NoError(t, json.Unmarshal(buf.Bytes(), &line))
		for k := range method {
			want := "[REDACTED]"
			if k == "CONNECTOR_NATS_USER" {
				want = "connector" // a user name is not a secret
			}
			assert.Equal(t, want, line.Config[k], k)
		}
		assert.Equal(t, f.ca, line.Config["CONNECTOR_NATS_TLS_CA_FILE"])
		assert.Empty(t, line.Config["CONNECTOR_NATS_CREDS_FILE"])

		var usage bytes.Buffer
		require.NoError(t, Usage(&usage))
		b, err := json.Marshal(c)
		require.NoError(t, err)
		for _, out := range []string{buf.String(), usage.String(), string(b), fmt.Sprintf("%+v %#v", c, c)} {
			assert.NotContains(t, out, natsPassword)
			assert.NotContains(t, out, natsToken)
		}
	}
	var usage bytes.Buffer
	require.NoError(t, Usage(&usage))
	for _, v := range []string{"NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS_FILE", "NATS_NKEY_FILE", "NATS_TLS_CA_FILE", "NATS_TLS_CERT_FILE", "NATS_TLS_KEY_FILE"} {
		assert.Regexp(t, `(?m)^`+Prefix+v+` +\(empty\) +no `, usage.String())
	}
	assert.Contains(t, usage.String(), "never logged")
}
