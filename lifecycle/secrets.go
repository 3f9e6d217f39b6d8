package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/secrets"
	"github.com/sirupsen/logrus"
)

// secretSettings are the settings that may be kept in Secrets Manager
// (<NAME>_SECRET_ARN) or Parameter Store (<NAME>_SSM_NAME), each with the
// key picked from a value that is a JSON object when none is given after
// a '#'. A URL is among them: its userinfo or query may hold a token.
func secretSettings() []secrets.Setting {
	return []secrets.Setting{
		{Name: "LOKI_URL", Key: "url"},
		{Name: "LOKI_USERNAME", Key: "username"},
		{Name: "LOKI_PASSWORD", Key: "password"},
		{Name: "LOKI_BEARER_TOKEN", Key: "token"},
	}
}

// loadSecrets fetches the settings kept in Secrets Manager or Parameter
// Store, within SECRETS_TIMEOUT_MS, and loads the configuration again with
// them; the Loki client is given a way to fetch them again when Loki
// refuses them. With no setting kept in a store it returns cfg and cfgErr
// as they are, having called nothing. Its errors name the variable at fault
// and never hold a fetched value.
func loadSecrets(ctx context.Context, lookup config.LookupFunc, cfg config.Config, cfgErr error, log *logrus.Logger) (config.Config, error) {
	r, err := secrets.New(lookup, secretSettings(), secrets.Options{Timeout: cfg.SecretsTimeout})
	switch {
	case err != nil:
		return cfg, fmt.Errorf("invalid configuration: %w", err)
	case r == nil:
		return cfg, cfgErr
	}
	start := time.Now()
	if err := r.Fetch(ctx); err != nil {
		// The rest of the configuration cannot be judged without these values
		// (LOKI_URL may be one of them): this is the one error to report.
		return cfg, fmt.Errorf("invalid configuration: %w", err)
	}
	from := strings.Join(r.Variables(), ", ")
	log.WithFields(logrus.Fields{"from": from, "took": time.Since(start).Round(time.Microsecond).String()}).Debug("fetched the settings kept in AWS")
	cfg, err = config.Load(r.Lookup(lookup))
	if err != nil {
		return cfg, fmt.Errorf("%w (with the values of %s)", err, from)
	}
	cfg.Loki.Reauth = reauth(r, lookup, from, log)
	return cfg, nil
}

// reauth is the Loki client's way to new credentials after a 401 or 403:
// fetch the kept settings again (the Resolver paces it) and, if they
// changed, hand them over. Each outcome is logged once, without values.
func reauth(r *secrets.Resolver, lookup config.LookupFunc, from string, log *logrus.Logger) func(context.Context) (loki.Credentials, bool) {
	return func(ctx context.Context) (loki.Credentials, bool) {
		outcome, err := r.Refresh(ctx)
		switch {
		case err != nil:
			log.WithError(err).Warn("Loki refused the credentials, and fetching them again failed")
			return loki.Credentials{}, false
		case outcome == secrets.NotYet:
			return loki.Credentials{}, false
		case outcome == secrets.Unchanged:
			log.Warnf("Loki refused the credentials; fetched them again from %s, but they have not changed", from)
			return loki.Credentials{}, false
		}
		cfg, err := config.Load(r.Lookup(lookup))
		if err != nil {
			log.WithError(err).Errorf("Loki refused the credentials, and the ones fetched again from %s are not valid", from)
			return loki.Credentials{}, false
		}
		log.Infof("Loki refused the credentials; fetched new ones from %s and retrying with them", from)
		return loki.Credentials{URL: cfg.Loki.URL, Username: cfg.Loki.Username, Password: cfg.Loki.Password, BearerToken: cfg.Loki.BearerToken}, true
	}
}
