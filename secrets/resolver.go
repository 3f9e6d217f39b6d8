package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults for Options' zero values.
const (
	// DefaultTimeout bounds one fetch of every value: the function's cold
	// start waits for the extension's init.
	DefaultTimeout = 2 * time.Second
	// DefaultRefreshEvery is the least time between two fetches made
	// because Loki refused the credentials. A secret that is wrong from the
	// start would otherwise cost a request per window in every sandbox, and
	// Parameter Store allows 40 per second per account by default.
	DefaultRefreshEvery = time.Minute
)

// Options tune a Resolver; zero values take the defaults.
type Options struct {
	// Timeout bounds one fetch of every value, retries included.
	Timeout time.Duration
	// RefreshEvery is the least time between two re-fetches; the first
	// re-fetch is made at once.
	RefreshEvery time.Duration
	// Transport replaces the HTTP transport, for tests.
	Transport http.RoundTripper
	// Now replaces the clock, for tests.
	Now func() time.Time
}

// Resolver fetches the settings kept in a store and hands them out as if
// they were environment variables. Its methods may be called from any
// goroutine.
type Resolver struct {
	refs   []Ref
	client *client
	opts   Options

	mu     sync.Mutex
	values map[string]string // setting name → value
	// refreshed is when the last re-fetch started; zero before the first.
	refreshed time.Time
}

// New reads which settings are kept in a store and how to reach AWS; it
// fetches nothing yet. It returns nil and no error when no setting is kept
// in a store, so that nothing about AWS is required then.
func New(lookup LookupFunc, settings []Setting, opts Options) (*Resolver, error) {
	refs, err := Refs(lookup, settings)
	if err != nil || len(refs) == 0 {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.RefreshEvery <= 0 {
		opts.RefreshEvery = DefaultRefreshEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	env, err := readAWSEnv(lookup, opts.Transport, opts.Now)
	if err != nil {
		return nil, err
	}
	return &Resolver{refs: refs, client: newClient(env, opts.Transport, opts.Now), opts: opts, values: map[string]string{}}, nil
}

// Variables names the variables that point at a store, for messages.
func (r *Resolver) Variables() []string {
	var names []string
	for _, ref := range r.refs {
		names = append(names, ref.Variable)
	}
	return names
}

// Fetch fetches every value, each secret or parameter once, all at the same
// time, within Options.Timeout and ctx. On error the values fetched before
// (none at init) stay in use.
func (r *Resolver) Fetch(ctx context.Context) error {
	_, err := r.fetch(ctx)
	return err
}

// Lookup returns base with the settings kept in a store replaced by their
// fetched values. A nil Resolver returns base.
func (r *Resolver) Lookup(base LookupFunc) LookupFunc {
	if r == nil {
		return base
	}
	return func(name string) (string, bool) {
		r.mu.Lock()
		v, ok := r.values[name]
		r.mu.Unlock()
		if ok {
			return v, true
		}
		return base(name)
	}
}

// Refreshed says what a Refresh did.
type Refreshed int

const (
	// NotYet means nothing was fetched: the last re-fetch is more recent
	// than Options.RefreshEvery.
	NotYet Refreshed = iota
	// Unchanged means the values were fetched and are the ones in use.
	Unchanged
	// Changed means new values were fetched and are now in use.
	Changed
)

// Refresh fetches the values again, unless it did less than
// Options.RefreshEvery ago; the caller then reads them through Lookup.
// Loki refusing the credentials is the reason to call it: the secret may
// have been rotated.
func (r *Resolver) Refresh(ctx context.Context) (Refreshed, error) {
	r.mu.Lock()
	now := r.opts.Now()
	if !r.refreshed.IsZero() && now.Sub(r.refreshed) < r.opts.RefreshEvery {
		r.mu.Unlock()
		return NotYet, nil
	}
	r.refreshed = now
	r.mu.Unlock()
	changed, err := r.fetch(ctx)
	switch {
	case err != nil:
		return Unchanged, err
	case changed:
		return Changed, nil
	}
	return Unchanged, nil
}

// fetch fetches every value and reports whether any differs from before.
func (r *Resolver) fetch(ctx context.Context) (bool, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	type result struct {
		value string
		err   error
	}
	// A secret holding a JSON object may give several settings (the
	// username and the password): it is fetched once.
	results := map[target]*result{}
	for _, ref := range r.refs {
		results[r.client.targetFor(ref.Store, ref.ID)] = &result{}
	}
	var wg sync.WaitGroup
	for t, res := range results {
		wg.Go(func() { res.value, res.err = r.client.fetch(ctx, t) })
	}
	wg.Wait()

	values := map[string]string{}
	var problems []string
	for _, ref := range r.refs {
		t := r.client.targetFor(ref.Store, ref.ID)
		res := results[t]
		if res.err != nil {
			problems = append(problems, r.describe(ctx, ref, t, res.err, time.Since(start)))
			continue
		}
		v, err := pick(res.value, ref)
		if err != nil {
			problems = append(problems, ref.Variable+": "+err.Error())
			continue
		}
		values[ref.Setting.Name] = v
	}
	if len(problems) > 0 {
		return false, newError(problems)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := !maps.Equal(values, r.values)
	r.values = values
	return changed, nil
}

// describe says why a value could not be fetched, naming the variable, the
// AWS error code and what usually fixes it.
func (r *Resolver) describe(ctx context.Context, ref Ref, t target, err error, took time.Duration) string {
	op := operations[ref.Store]
	what := fmt.Sprintf("%s: %s %s for %q", ref.Variable, ref.Store, op.name, ref.ID)
	var apiErr *APIError
	switch {
	case errors.As(err, &apiErr):
		return fmt.Sprintf("%s failed with %s%s", what, apiErr, hint(ref.Store, t.region, apiErr.Code))
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		// A re-fetch is also bounded by the push window, which may end first.
		return fmt.Sprintf("%s: no answer from %s in %s (SECRETS_TIMEOUT_MS=%d); a function in a VPC reaches %s only through a VPC endpoint (com.amazonaws.%s.%s) or a NAT gateway",
			what, redact(t.endpoint), took.Round(time.Millisecond), r.opts.Timeout.Milliseconds(), ref.Store, t.region, op.service)
	}
	return fmt.Sprintf("%s at %s failed: %v", what, redact(t.endpoint), err)
}

// hint says what usually fixes an AWS error.
func hint(store Store, region, code string) string {
	op := operations[store]
	switch code {
	case "AccessDeniedException":
		return fmt.Sprintf(" (the function's role needs %s on it, and kms:Decrypt on its key if a customer-managed KMS key encrypts it)", op.permission)
	case "ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound":
		return fmt.Sprintf(" (check the ARN or name, and the region: a name is looked up in %s)", region)
	case "DecryptionFailure", "InvalidKeyId", "KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException", "KMSNotFoundException":
		return " (the function's role needs kms:Decrypt on the KMS key that encrypts it)"
	case "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature", "InvalidClientTokenId",
		"ExpiredTokenException", "MissingAuthenticationToken", "SignatureDoesNotMatch":
		return " (AWS refused the function's credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded":
		return fmt.Sprintf(" (AWS throttled every attempt, up to %d; Parameter Store's default throughput is 40 requests per second per account)", maxAttempts)
	}
	return ""
}

// pick returns a setting's value out of a fetched value: the key given
// after '#', or the setting's own key, of a JSON object; the whole value
// otherwise. Its errors name keys, never values.
func pick(raw string, ref Ref) (string, error) {
	var obj map[string]json.RawMessage
	isObject := strings.HasPrefix(strings.TrimSpace(raw), "{") && json.Unmarshal([]byte(raw), &obj) == nil
	switch {
	case !isObject && ref.Key != "":
		return "", fmt.Errorf("the value is not a JSON object, so there is no key %q to pick (given after the '#')", ref.Key)
	case !isObject:
		if strings.TrimSpace(raw) == "" {
			return "", errors.New("the value is empty")
		}
		return raw, nil
	}
	key := ref.key()
	field, ok := obj[key]
	if !ok {
		keys := slices.Sorted(maps.Keys(obj))
		if len(keys) > 10 {
			keys = append(keys[:10], "…")
		}
		return "", fmt.Errorf("the value is a JSON object without the key %q (its keys: %s); pick another with #<key> after the ARN or name", key, strings.Join(keys, ", "))
	}
	var s string
	if json.Unmarshal(field, &s) == nil {
		if strings.TrimSpace(s) == "" {
			return "", fmt.Errorf("the key %q of the JSON object is empty", key)
		}
		return s, nil
	}
	// A number is taken as written: a Grafana Cloud user is a numeric ID.
	var n json.Number
	if json.Unmarshal(field, &n) == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("the key %q of the JSON object holds neither a string nor a number", key)
}
