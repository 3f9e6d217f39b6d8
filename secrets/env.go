package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/lambda-loki/grafana-loki-extension/internal/httperr"
)

// awsEnv is what calling AWS takes from the environment Lambda sets: the
// region, the function role's credentials and the endpoint overrides of the
// SDKs' shared configuration.
// https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
// https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html
type awsEnv struct {
	region string
	creds  credentials
	// overrides are the endpoints set with AWS_ENDPOINT_URL_<SERVICE> or
	// AWS_ENDPOINT_URL, per store.
	overrides map[Store]string
	// fips picks the FIPS endpoints (AWS_USE_FIPS_ENDPOINT=true).
	fips bool
}

// readAWSEnv reads the environment; each error names the variable at fault.
func readAWSEnv(lookup LookupFunc, transport http.RoundTripper, now func() time.Time) (awsEnv, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var errs []string
	env := awsEnv{region: get("AWS_REGION"), overrides: map[Store]string{}, fips: strings.EqualFold(get("AWS_USE_FIPS_ENDPOINT"), "true")}
	if env.region == "" {
		env.region = get("AWS_DEFAULT_REGION")
	}
	if env.region == "" {
		errs = append(errs, "AWS_REGION: not set, so there is no region to fetch secrets from (Lambda sets it; outside Lambda, set it)")
	}

	switch id, secret, fullURI := get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"), get("AWS_CONTAINER_CREDENTIALS_FULL_URI"); {
	case id != "" && secret == "":
		errs = append(errs, "AWS_SECRET_ACCESS_KEY: not set although AWS_ACCESS_KEY_ID is")
	case id != "":
		env.creds = staticCredentials(aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: get("AWS_SESSION_TOKEN"), Source: "environment"})
	case fullURI != "":
		// SnapStart functions get their role's credentials from a local
		// endpoint instead of the environment, so that they outlive the
		// snapshot.
		// https://docs.aws.amazon.com/lambda/latest/dg/snapstart-activate.html#snapstart-credentials
		c, err := newContainerCredentials(fullURI, get("AWS_CONTAINER_AUTHORIZATION_TOKEN"), get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), transport, now)
		if err != nil {
			errs = append(errs, err.Error())
			break
		}
		env.creds = c
	default:
		errs = append(errs, "AWS_ACCESS_KEY_ID: not set, nor AWS_CONTAINER_CREDENTIALS_FULL_URI, so there are no credentials to fetch secrets with (Lambda sets them for the function's role)")
	}

	if !strings.EqualFold(get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		global := get("AWS_ENDPOINT_URL")
		if err := checkEndpoint(global); err != nil {
			errs = append(errs, "AWS_ENDPOINT_URL: "+err.Error())
			global = ""
		}
		for store, op := range operations {
			ep := get(op.endpointVar)
			if err := checkEndpoint(ep); err != nil {
				errs = append(errs, op.endpointVar+": "+err.Error())
				ep = ""
			}
			if ep == "" {
				ep = global
			}
			if ep != "" {
				env.overrides[store] = ep
			}
		}
	}
	if len(errs) > 0 {
		return env, newError(errs)
	}
	return env, nil
}

// checkEndpoint accepts an empty (unset) endpoint or an http(s) URL. The
// value is not repeated in the error: it may hold userinfo.
func checkEndpoint(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http or https URL with a host")
	}
	return nil
}

// endpoint is where requests for a store in a region go: the override, or
// AWS's regional endpoint.
// https://docs.aws.amazon.com/general/latest/gr/asm.html
// https://docs.aws.amazon.com/general/latest/gr/ssm.html
func (e awsEnv) endpoint(store Store, region string) string {
	if ep, ok := e.overrides[store]; ok {
		return ep
	}
	host := operations[store].service
	if e.fips {
		host += "-fips"
	}
	suffix := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = "amazonaws.com.cn"
	}
	return "https://" + host + "." + region + "." + suffix
}

// credentials are the function role's credentials.
type credentials interface {
	retrieve(ctx context.Context) (aws.Credentials, error)
}

// staticCredentials are the ones Lambda puts in the environment.
type staticCredentials aws.Credentials

func (c staticCredentials) retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials(c), nil
}

// containerCredentials come from the container credentials endpoint, and
// are fetched again shortly before they expire.
// https://docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html
type containerCredentials struct {
	uri, token, tokenFile string
	http                  *http.Client
	now                   func() time.Time

	mu     sync.Mutex
	cached aws.Credentials
}

// credentialsMargin is how long before they expire credentials are renewed.
const credentialsMargin = 5 * time.Minute

func newContainerCredentials(uri, token, tokenFile string, transport http.RoundTripper, now func() time.Time) (*containerCredentials, error) {
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" || (u.Scheme != "https" && (u.Scheme != "http" || !localHost(u.Hostname()))) {
		// The authorization token is sent there: over plain HTTP only to
		// this machine or the link-local metadata addresses.
		return nil, errors.New("AWS_CONTAINER_CREDENTIALS_FULL_URI: want an https URL, or an http URL of a loopback or link-local address")
	}
	if transport == nil {
		// The endpoint is this machine's or link-local: a proxy set for
		// Loki and AWS's APIs must not see the token.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		transport = t
	}
	return &containerCredentials{uri: uri, token: token, tokenFile: tokenFile, now: now,
		http: &http.Client{Transport: transport, Timeout: 5 * time.Second}}, nil
}

func localHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.Equal(net.ParseIP("fd00:ec2::23")))
}

func (c *containerCredentials) retrieve(ctx context.Context) (aws.Credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached.HasKeys() && (!c.cached.CanExpire || c.now().Before(c.cached.Expires.Add(-credentialsMargin))) {
		return c.cached, nil
	}
	token := c.token
	if c.tokenFile != "" {
		data, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return aws.Credentials{}, fmt.Errorf("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %w", err)
		}
		token = strings.TrimSpace(string(data))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.uri, nil)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI: getting the function's credentials: %w", httperr.Cause(err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var out struct {
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		Token           string
		Expiration      time.Time
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &out) != nil || out.AccessKeyID == "" || out.SecretAccessKey == "" {
		// The answer is not quoted: it may hold credentials.
		return aws.Credentials{}, fmt.Errorf("AWS_CONTAINER_CREDENTIALS_FULL_URI: answered %d without credentials", resp.StatusCode)
	}
	c.cached = aws.Credentials{AccessKeyID: out.AccessKeyID, SecretAccessKey: out.SecretAccessKey, SessionToken: out.Token,
		Source: "container", CanExpire: !out.Expiration.IsZero(), Expires: out.Expiration}
	return c.cached, nil
}
