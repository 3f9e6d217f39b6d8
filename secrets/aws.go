package secrets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/lambda-loki/grafana-loki-extension/internal/httperr"
)

// operation is the one call the extension makes to a store, in the AWS JSON
// 1.1 protocol: a POST to / with the operation named in X-Amz-Target.
// https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html
// https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetParameter.html
type operation struct {
	name string
	// target is X-Amz-Target; service is the SigV4 signing name and the
	// endpoint's host prefix.
	target, service string
	// endpointVar is the service-specific endpoint override, from the SDKs'
	// shared configuration:
	// https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html
	endpointVar string
	// permission is the IAM action the function's role needs.
	permission string
}

var operations = map[Store]operation{
	SecretsManager: {
		name: "GetSecretValue", target: "secretsmanager.GetSecretValue", service: "secretsmanager",
		endpointVar: "AWS_ENDPOINT_URL_SECRETS_MANAGER", permission: "secretsmanager:GetSecretValue",
	},
	ParameterStore: {
		name: "GetParameter", target: "AmazonSSM.GetParameter", service: "ssm",
		endpointVar: "AWS_ENDPOINT_URL_SSM", permission: "ssm:GetParameter",
	},
}

// maxAnswer bounds what is read of an answer: a secret holds at most 64 KiB
// and a parameter 8 KiB, which JSON escaping can double.
const maxAnswer = 256 << 10

// Retries of throttling, server errors and failed connections, inside the
// caller's deadline.
const (
	maxAttempts  = 3
	retryBackoff = 50 * time.Millisecond
)

// APIError is an AWS service's error answer.
type APIError struct {
	// Code is the error's type, such as AccessDeniedException.
	Code string
	// Message is AWS's explanation; it never holds a secret's value.
	Message string
	// Status is the HTTP status.
	Status int
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// retryable reports whether trying again soon may succeed.
func (e *APIError) retryable() bool {
	switch e.Code {
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
		"InternalServiceError", "InternalServerError", "InternalFailure", "ServiceUnavailable":
		return true
	}
	return e.Status >= 500
}

// client calls Secrets Manager and Parameter Store.
type client struct {
	env    awsEnv
	http   *http.Client
	signer *v4.Signer
	now    func() time.Time
}

func newClient(env awsEnv, transport http.RoundTripper, now func() time.Time) *client {
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The values are fetched once at init and rarely after: a kept-alive
		// connection would only die in the freeze.
		t.DisableKeepAlives = true
		transport = t
	}
	return &client{
		env:    env,
		http:   &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		signer: v4.NewSigner(),
		now:    now,
	}
}

// target is where one value is fetched from.
type target struct {
	store    Store
	id       string
	region   string
	endpoint string
}

// targetFor works out the region and endpoint of a value: an ARN names its
// own region (a secret may live in another region than the function's),
// a name lives in the function's region.
func (c *client) targetFor(store Store, id string) target {
	region := c.env.region
	if r := arnRegion(id); r != "" {
		region = r
	}
	return target{store: store, id: id, region: region, endpoint: c.env.endpoint(store, region)}
}

// arnRegion returns the region field of an ARN, or "" for a name.
func arnRegion(id string) string {
	parts := strings.SplitN(id, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return ""
	}
	return parts[3]
}

// fetch returns the whole value of a secret or parameter, retrying what may
// succeed on a second try while ctx lasts.
func (c *client) fetch(ctx context.Context, t target) (string, error) {
	backoff := retryBackoff
	for attempt := 1; ; attempt++ {
		value, err := c.call(ctx, t)
		if err == nil {
			return value, nil
		}
		var apiErr *APIError
		retry := (errors.As(err, &apiErr) && apiErr.retryable()) || (apiErr == nil && ctx.Err() == nil)
		if !retry || attempt == maxAttempts {
			return "", err
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
			return "", err
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return "", err
		case <-timer.C:
		}
		backoff *= 2
	}
}

// call makes one signed request.
func (c *client) call(ctx context.Context, t target) (string, error) {
	op := operations[t.store]
	var input any
	if t.store == ParameterStore {
		// A SecureString is returned encrypted unless decryption is asked for.
		input = struct {
			Name           string
			WithDecryption bool
		}{t.id, true}
	} else {
		input = struct{ SecretId string }{t.id}
	}
	body, err := json.Marshal(input)
	if err != nil {
		return "", fmt.Errorf("encoding the %s request: %w", op.name, err)
	}
	creds, err := c.env.creds.retrieve(ctx)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("building the %s request for %s: %w", op.name, redact(t.endpoint), err)
	}
	if req.URL.Path == "" {
		req.URL.Path = "/"
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", op.target)
	hash := sha256.Sum256(body)
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(hash[:]), op.service, t.region, c.now()); err != nil {
		return "", fmt.Errorf("signing the %s request: %w", op.name, err)
	}
	req.Header.Set("User-Agent", "grafana-loki-extension")
	resp, err := c.http.Do(req)
	if err != nil {
		// The endpoint is named by the caller.
		return "", httperr.Cause(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return "", fmt.Errorf("reading the %s answer: %w", op.name, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return "", apiError(resp, data)
	}
	return decodeValue(t.store, data)
}

// decodeValue reads the value out of a successful answer. Its errors never
// quote the answer, which holds the secret.
func decodeValue(store Store, data []byte) (string, error) {
	if store == ParameterStore {
		var out struct {
			Parameter *struct {
				Value *string
				Type  string
			}
		}
		if json.Unmarshal(data, &out) != nil || out.Parameter == nil || out.Parameter.Value == nil {
			return "", errors.New("GetParameter answered without a parameter value")
		}
		return *out.Parameter.Value, nil
	}
	var out struct {
		SecretString *string
		SecretBinary []byte // base64 in JSON, which encoding/json decodes
	}
	if json.Unmarshal(data, &out) != nil {
		return "", errors.New("GetSecretValue answered with something that is not JSON")
	}
	switch {
	case out.SecretString != nil:
		return *out.SecretString, nil
	case out.SecretBinary != nil:
		return string(out.SecretBinary), nil
	}
	return "", errors.New("GetSecretValue answered without SecretString or SecretBinary")
}

// apiError reads an AWS JSON protocol error: the type comes from the
// X-Amzn-ErrorType header or the body's __type (or code), without its
// namespace ("com.amazonaws...#") or a ":"-suffix.
func apiError(resp *http.Response, data []byte) error {
	var body struct {
		Type     string `json:"__type"`
		Code     string `json:"code"`
		Message  string `json:"message"`
		Message2 string `json:"Message"`
	}
	_ = json.Unmarshal(data, &body)
	code := resp.Header.Get("X-Amzn-ErrorType")
	for _, c := range []string{body.Type, body.Code} {
		if code == "" {
			code = c
		}
	}
	code, _, _ = strings.Cut(code, ":")
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	if code == "" {
		code = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	msg := body.Message
	if msg == "" {
		msg = body.Message2
	}
	if len(msg) > 300 {
		msg = strings.ToValidUTF8(msg[:300], "") + "…"
	}
	return &APIError{Code: code, Message: msg, Status: resp.StatusCode}
}

// redact makes an endpoint safe to show: no userinfo, no query.
func redact(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "an unreadable endpoint URL"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}
