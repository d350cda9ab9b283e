// NATS connection options shared by the daemon and its commands.

package main

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cohort-connector/cohort-connector/config"
)

// natsOptions returns the connection options for cfg: name, reconnect forever, auth and TLS.
//
// Authentication is the one method config.Validate allows: user and
// password, token, JWT creds file or NKey seed file (none for the embedded
// server, or when the URL carries user info). Any TLS file turns on
// nats.Secure: the CA file verifies the server (system roots otherwise), the
// certificate and key are presented to it. Files are read here, so a file
// removed since startup validation is reported now, naming its variable;
// errors never contain a secret. Callers append their handlers (disconnect,
// reconnect, closed) and, for one-shot commands, nats.Timeout.
func natsOptions(cfg config.Config, name string) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
	}

	switch {
	case cfg.NATSUser != "" || cfg.NATSPassword != "":
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword.Reveal()))
	case cfg.NATSToken != "":
		opts = append(opts, nats.Token(cfg.NATSToken.Reveal()))
	case cfg.NATSCredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.NATSCredsFile))
	case cfg.NATSNKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NATSNKeyFile)
		if err != nil {
			return nil, fmt.Errorf("CONNECTOR_NATS_NKEY_FILE %s: %w", cfg.NATSNKeyFile, err)
		}
		opts = append(opts, opt)
	}

	var tlsOpts []nats.Option
	if cfg.NATSTLSCAFile != "" {
		tlsOpts = append(tlsOpts, namedOption("CONNECTOR_NATS_TLS_CA_FILE", nats.RootCAs(cfg.NATSTLSCAFile)))
	}
	if cfg.NATSTLSCertFile != "" || cfg.NATSTLSKeyFile != "" {
		tlsOpts = append(tlsOpts, namedOption("CONNECTOR_NATS_TLS_CERT_FILE and CONNECTOR_NATS_TLS_KEY_FILE",
			nats.ClientCert(cfg.NATSTLSCertFile, cfg.NATSTLSKeyFile)))
	}
	if len(tlsOpts) > 0 {
		// Secure also when only a client certificate is set (RootCAs and
		// ClientCert set it too, but the requirement should not depend
		// on that).
		opts = append(opts, nats.Secure())
		opts = append(opts, tlsOpts...)
		// Apply them once to a scratch Options so that a bad file fails
		// here, with the variable's name, rather than inside Connect.
		var scratch nats.Options
		for _, o := range opts {
			if err := o(&scratch); err != nil {
				return nil, err
			}
		}
	}
	return opts, nil
}

// namedOption wraps opt so that its error names the variables it came from.
func namedOption(vars string, opt nats.Option) nats.Option {
	return func(o *nats.Options) error {
		if err := opt(o); err != nil {
			return fmt.Errorf("%s: %w", vars, err)
		}
		return nil
	}
}
