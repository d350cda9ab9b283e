package config

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
)

// Usage writes the help for `cohort-connector --help`: every static
// variable with its default, whether it is required and what it means, then
// the per-account variables.
func Usage(w io.Writer) error {
	var b bytes.Buffer
	b.WriteString("Configuration is read from environment variables. Durations use Go syntax\n" +
		"(500ms, 30s, 15m); lists are comma separated. Unknown " + Prefix + "* variables\n" +
		"are an error.\n\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tREQUIRED\tMEANING")
	for _, sv := range staticVars {
		def, req := sv.def, "no"
		if def == "" {
			def = "(empty)"
		}
		if sv.required {
			def, req = "-", "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", sv.name, def, req, sv.desc)
	}
	_ = tw.Flush()

	b.WriteString("\nFor each account name in " + Prefix + "ACCOUNTS (NAME in upper case, e.g. brand_a\n" +
		"gives " + accountVar("brand_a", suffixToken) + "). " + suffixAdAccountID[1:] + " and " + suffixTagIDs[1:] + " are required;\n" +
		suffixToken[1:] + " (conversion events) or OAuth (" + suffixAppID[1:] + ", " + suffixAppSecret[1:] + " and " + suffixRefresh[1:] + ",\n" +
		"all three; needed by audiences) or both; secrets are never logged:\n\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	const name = "<NAME>"
	fmt.Fprintf(tw, "%s\tPinterest ad account id, digits, at most %d\n", accountVar(name, suffixAdAccountID), maxAdAccountLen)
	fmt.Fprintf(tw, "%s\tTag IDs routed to that ad account, comma separated, digits, at most %d each;\n", accountVar(name, suffixTagIDs), maxTagIDLen)
	fmt.Fprintf(tw, "\ta Tag ID belongs to one account, and %sDEFAULT_TAG_ID must be one of them\n", Prefix)
	fmt.Fprintf(tw, "%s\tPinterest conversion token (Bearer) of that ad account; optional with OAuth\n", accountVar(name, suffixToken))
	fmt.Fprintf(tw, "%s\tPinterest app id (OAuth client id), digits\n", accountVar(name, suffixAppID))
	fmt.Fprintf(tw, "%s\tthat app's secret\n", accountVar(name, suffixAppSecret))
	fmt.Fprintf(tw, "%s\tthe first OAuth refresh token; later ones are kept encrypted (%sSECRETS_KEY)\n", accountVar(name, suffixRefresh), Prefix)
	fmt.Fprintf(tw, "\tin %sSTATE_BUCKET\n", Prefix)
	_ = tw.Flush()

	_, err := w.Write(b.Bytes())
	return err
}

// MarshalZerologObject logs the effective configuration, keyed by variable
// name, for the single startup log line:
//
//	log.Info().Object("config", cfg).Msg("starting")
//
// Secrets (account tokens, app secrets and refresh tokens,
// CONNECTOR_NATS_PASSWORD, CONNECTOR_NATS_TOKEN, CONNECTOR_SECRETS_KEY) are
// masked: "[REDACTED]" when set, "" when not, and so is the user info of NATS URLs (it may hold a password
// or a token). File variables show the path only. Durations and lists are
// written as they would be set.
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	v := reflect.ValueOf(c)
	for _, sv := range staticVars {
		switch x := v.Field(sv.index).Interface().(type) {
		case string:
			if sv.name == Prefix+"NATS_URL" {
				x = redactURL(x)
			}
			e.Str(sv.name, x)
		case Secret:
			e.Str(sv.name, x.String())
		case []string:
			e.Str(sv.name, strings.Join(x, ","))
		case int:
			e.Int(sv.name, x)
		case time.Duration:
			e.Str(sv.name, x.String())
		}
	}
	for _, a := range c.AccountList {
		if !validAccountName(a.Name) {
			continue
		}
		e.Str(accountVar(a.Name, suffixAdAccountID), a.AdAccountID)
		e.Str(accountVar(a.Name, suffixToken), a.Token.String())
		e.Str(accountVar(a.Name, suffixTagIDs), strings.Join(a.TagIDs, ","))
		e.Str(accountVar(a.Name, suffixAppID), a.AppID)
		e.Str(accountVar(a.Name, suffixAppSecret), a.AppSecret.String())
		e.Str(accountVar(a.Name, suffixRefresh), a.RefreshToken.String())
	}
}
