package secrets

import (
	"encoding/json"
	"errors"
	"github.com/lambda-loki/grafana-loki-extension/internal/envtest"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/lambda-loki/grafana-loki-extension/internal/fakeaws"
)

// settings are the extension's, as main passes them.
var settings = []Setting{{"LOKI_URL", "url"}, {"LOKI_USERNAME", "username"}, {"LOKI_PASSWORD", "password"}, {"LOKI_BEARER_TOKEN", "token"}}

// env makes a lookup from KEY=value pairs.
func env(pairs ...string) LookupFunc { return envtest.Lookup(pairs...) }

func TestRefs(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		want    []Ref
		wantErr []string // substrings, each naming a variable
	}{
		{name: "nothing kept in a store", env: []string{"LOKI_PASSWORD=pw"}},
		{name: "a secret", env: []string{"LOKI_PASSWORD_SECRET_ARN=arn:aws:secretsmanager:eu-west-3:1:secret:loki-AbCdEf"},
			want: []Ref{{Setting: settings[2], Variable: "LOKI_PASSWORD_SECRET_ARN", Store: SecretsManager, ID: "arn:aws:secretsmanager:eu-west-3:1:secret:loki-AbCdEf"}}},
		{name: "a parameter with a key", env: []string{"LOKI_URL_SSM_NAME= /loki/url#push "},
			want: []Ref{{Setting: settings[0], Variable: "LOKI_URL_SSM_NAME", Store: ParameterStore, ID: "/loki/url", Key: "push"}}},
		{name: "blank is unset", env: []string{"LOKI_PASSWORD_SECRET_ARN= ", "LOKI_PASSWORD=pw"}},
		{name: "both forms", env: []string{"LOKI_PASSWORD_SECRET_ARN=a", "LOKI_PASSWORD_SSM_NAME=b"},
			wantErr: []string{"LOKI_PASSWORD_SECRET_ARN, LOKI_PASSWORD_SSM_NAME: both say where LOKI_PASSWORD is kept"}},
		{name: "a form and the plain value", env: []string{"LOKI_BEARER_TOKEN_SSM_NAME=t", "LOKI_BEARER_TOKEN=plain-token-value"},
			wantErr: []string{"LOKI_BEARER_TOKEN_SSM_NAME: LOKI_BEARER_TOKEN is set too"}},
		{name: "nothing after #", env: []string{"LOKI_USERNAME_SECRET_ARN=loki#"}, wantErr: []string{"LOKI_USERNAME_SECRET_ARN: nothing after the '#'"}},
		{name: "nothing before #", env: []string{"LOKI_USERNAME_SECRET_ARN=#username"}, wantErr: []string{"LOKI_USERNAME_SECRET_ARN: no ARN or name"}},
		{name: "every problem at once", env: []string{"LOKI_USERNAME_SECRET_ARN=#u", "LOKI_URL_SECRET_ARN=a", "LOKI_URL_SSM_NAME=b"},
			wantErr: []string{"LOKI_USERNAME_SECRET_ARN", "LOKI_URL_SECRET_ARN, LOKI_URL_SSM_NAME"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refs, err := Refs(env(tt.env...), settings)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; refs %+v", refs)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if strings.Contains(err.Error(), "plain-token-value") {
					t.Errorf("the error repeats the plain value: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(refs) != len(tt.want) {
				t.Fatalf("refs %+v, want %+v", refs, tt.want)
			}
			for i := range refs {
				if refs[i] != tt.want[i] {
					t.Errorf("ref %d: %+v, want %+v", i, refs[i], tt.want[i])
				}
			}
		})
	}
}

func TestNewWithoutRefsNeedsNoAWS(t *testing.T) {
	r, err := New(env("LOKI_PASSWORD=pw"), settings, Options{})
	if r != nil || err != nil {
		t.Fatalf("New = %v, %v; want nil, nil", r, err)
	}
	if v, _ := r.Lookup(env("LOKI_PASSWORD=pw"))("LOKI_PASSWORD"); v != "pw" {
		t.Fatalf("a nil Resolver's Lookup read %q", v)
	}
}

func TestNewNamesMissingAWSSettings(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"no region", []string{"AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=b"}, "AWS_REGION: not set"},
		{"no credentials", []string{"AWS_REGION=eu-west-3"}, "AWS_ACCESS_KEY_ID: not set"},
		{"half the credentials", []string{"AWS_REGION=eu-west-3", "AWS_ACCESS_KEY_ID=a"}, "AWS_SECRET_ACCESS_KEY: not set"},
		{"bad endpoint", []string{"AWS_REGION=eu-west-3", "AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=b", "AWS_ENDPOINT_URL_SSM=ftp://user:pw@x"}, "AWS_ENDPOINT_URL_SSM: want an http or https URL"},
		{"container credentials over plain HTTP elsewhere", []string{"AWS_REGION=eu-west-3", "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://example.com/creds"}, "AWS_CONTAINER_CREDENTIALS_FULL_URI: want an https URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(env(append(tt.env, "LOKI_PASSWORD_SSM_NAME=/p")...), settings, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "user:pw") {
				t.Fatalf("the error repeats the endpoint's userinfo: %v", err)
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	base := []string{"AWS_REGION=eu-west-3", "AWS_ACCESS_KEY_ID=a", "AWS_SECRET_ACCESS_KEY=b"}
	tests := []struct {
		name  string
		env   []string
		store Store
		id    string
		want  string
		sign  string // signing region
	}{
		{"regional", nil, SecretsManager, "loki", "https://secretsmanager.eu-west-3.amazonaws.com", "eu-west-3"},
		{"regional SSM", nil, ParameterStore, "/loki", "https://ssm.eu-west-3.amazonaws.com", "eu-west-3"},
		{"an ARN's own region", nil, SecretsManager, "arn:aws:secretsmanager:us-east-2:1:secret:x", "https://secretsmanager.us-east-2.amazonaws.com", "us-east-2"},
		{"China", []string{"AWS_REGION=cn-north-1"}, ParameterStore, "/loki", "https://ssm.cn-north-1.amazonaws.com.cn", "cn-north-1"},
		{"FIPS", []string{"AWS_USE_FIPS_ENDPOINT=true"}, SecretsManager, "loki", "https://secretsmanager-fips.eu-west-3.amazonaws.com", "eu-west-3"},
		{"global override", []string{"AWS_ENDPOINT_URL=http://127.0.0.1:1"}, ParameterStore, "/loki", "http://127.0.0.1:1", "eu-west-3"},
		{"service override wins", []string{"AWS_ENDPOINT_URL=http://127.0.0.1:1", "AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:2"}, SecretsManager, "loki", "http://127.0.0.1:2", "eu-west-3"},
		{"other service's override", []string{"AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:2"}, ParameterStore, "/loki", "https://ssm.eu-west-3.amazonaws.com", "eu-west-3"},
		{"overrides ignored", []string{"AWS_ENDPOINT_URL=http://127.0.0.1:1", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true"}, SecretsManager, "loki", "https://secretsmanager.eu-west-3.amazonaws.com", "eu-west-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := readAWSEnv(env(append(base, tt.env...)...), nil, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			got := newClient(e, nil, time.Now).targetFor(tt.store, tt.id)
			if got.endpoint != tt.want || got.region != tt.sign {
				t.Fatalf("endpoint %s signed for %s, want %s for %s", got.endpoint, got.region, tt.want, tt.sign)
			}
		})
	}
}

// fetchEnv is the environment of a function whose role's credentials are
// the fake's test ones, reaching the fake through AWS_ENDPOINT_URL.
func fetchEnv(s *fakeaws.Server, extra ...string) LookupFunc {
	return env(append(s.Env(), extra...)...)
}

func TestFetch(t *testing.T) {
	s := fakeaws.Start(fakeaws.Config{})
	defer s.Close()
	plain := s.PutSecret("plain", "plain-pw-1")
	both := s.PutSecret("both", `{"username": 1234567, "password": "json-pw-2", "token": "tok-3", "url": "https://u:url-pw-4@loki.example.com/loki/api/v1/push"}`)
	binary := s.PutBinarySecret("binary", []byte("binary-pw-5"))
	s.PutParameter("/loki/password", "ssm-pw-6\n", true)
	s.PutParameter("/loki/json", `{"pass":"ssm-json-pw-7"}`, true)
	s.PutParameter("/loki/flat", "flat", false)
	denied := s.PutSecret("denied", "denied-pw-8")
	s.Deny(denied)
	values := []string{"plain-pw-1", "json-pw-2", "tok-3", "url-pw-4", "binary-pw-5", "ssm-pw-6", "ssm-json-pw-7", "denied-pw-8"}

	tests := []struct {
		name     string
		env      []string
		fault    fakeaws.Fault
		want     map[string]string
		wantErr  []string
		requests int64 // served by the fake, when not 0
	}{
		{name: "plain secret", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + plain, "LOKI_USERNAME=u"}, want: map[string]string{"LOKI_PASSWORD": "plain-pw-1", "LOKI_USERNAME": "u"}},
		{name: "plain secret by name", env: []string{"LOKI_PASSWORD_SECRET_ARN=plain"}, want: map[string]string{"LOKI_PASSWORD": "plain-pw-1"}},
		{name: "JSON secret, keys named after the settings, fetched once", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + both, "LOKI_USERNAME_SECRET_ARN=" + both},
			want: map[string]string{"LOKI_PASSWORD": "json-pw-2", "LOKI_USERNAME": "1234567"}, requests: 1},
		{name: "JSON secret, token and url", env: []string{"LOKI_BEARER_TOKEN_SECRET_ARN=" + both, "LOKI_URL_SECRET_ARN=" + both},
			want: map[string]string{"LOKI_BEARER_TOKEN": "tok-3", "LOKI_URL": "https://u:url-pw-4@loki.example.com/loki/api/v1/push"}},
		{name: "JSON secret, key picked with #", env: []string{"LOKI_BEARER_TOKEN_SECRET_ARN=" + both + "#password"}, want: map[string]string{"LOKI_BEARER_TOKEN": "json-pw-2"}},
		{name: "binary secret", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + binary}, want: map[string]string{"LOKI_PASSWORD": "binary-pw-5"}},
		{name: "SecureString", env: []string{"LOKI_PASSWORD_SSM_NAME=/loki/password"}, want: map[string]string{"LOKI_PASSWORD": "ssm-pw-6\n"}},
		{name: "SecureString with JSON, key picked", env: []string{"LOKI_PASSWORD_SSM_NAME=/loki/json#pass"}, want: map[string]string{"LOKI_PASSWORD": "ssm-json-pw-7"}},
		{name: "a secret and a parameter", env: []string{"LOKI_PASSWORD_SSM_NAME=/loki/password", "LOKI_USERNAME_SECRET_ARN=" + both},
			want: map[string]string{"LOKI_PASSWORD": "ssm-pw-6\n", "LOKI_USERNAME": "1234567"}, requests: 2},

		{name: "unknown ARN", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + plain + "x"},
			wantErr: []string{"LOKI_PASSWORD_SECRET_ARN: Secrets Manager GetSecretValue", "ResourceNotFoundException", "check the ARN or name"}},
		{name: "unknown parameter", env: []string{"LOKI_PASSWORD_SSM_NAME=/nope"}, wantErr: []string{"LOKI_PASSWORD_SSM_NAME: SSM Parameter Store GetParameter", "ParameterNotFound"}},
		{name: "access denied", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + denied}, wantErr: []string{"LOKI_PASSWORD_SECRET_ARN", "AccessDeniedException", "needs secretsmanager:GetSecretValue", "kms:Decrypt"}},
		{name: "throttled", env: []string{"LOKI_PASSWORD_SSM_NAME=/loki/password"}, fault: fakeaws.Fault{Code: "ThrottlingException"},
			wantErr: []string{"LOKI_PASSWORD_SSM_NAME", "ThrottlingException", "throttled every attempt, up to 3"}},
		{name: "JSON without the key", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + both + "#secret"},
			wantErr: []string{`LOKI_PASSWORD_SECRET_ARN: the value is a JSON object without the key "secret" (its keys: password, token, url, username)`}},
		{name: "key picked from a value that is not JSON", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + plain + "#password"},
			wantErr: []string{`LOKI_PASSWORD_SECRET_ARN: the value is not a JSON object, so there is no key "password"`}},
		{name: "wrong secret key", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + plain, "AWS_SECRET_ACCESS_KEY=wrong"},
			wantErr: []string{"LOKI_PASSWORD_SECRET_ARN", "InvalidSignatureException", "refused the function's credentials"}},
		{name: "no session token", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + plain, "AWS_SESSION_TOKEN="},
			wantErr: []string{"LOKI_PASSWORD_SECRET_ARN", "UnrecognizedClientException"}},
		{name: "one of two fails", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + plain, "LOKI_USERNAME_SSM_NAME=/nope"},
			wantErr: []string{"LOKI_USERNAME_SSM_NAME", "ParameterNotFound"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.SetFault(tt.fault)
			defer s.SetFault(fakeaws.Fault{})
			before := s.Stats()
			r, err := New(fetchEnv(s, tt.env...), settings, Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Fetch(t.Context())
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				for _, v := range values {
					if strings.Contains(err.Error(), v) {
						t.Errorf("the error holds the value %q: %s", v, err)
					}
				}
				if strings.Contains(err.Error(), fakeaws.SecretAccessKey) || strings.Contains(err.Error(), fakeaws.SessionToken) {
					t.Errorf("the error holds the credentials: %s", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lookup := r.Lookup(fetchEnv(s, tt.env...))
			for name, want := range tt.want {
				if got, ok := lookup(name); !ok || got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			served := s.Stats().GetSecretValue + s.Stats().GetParameter - before.GetSecretValue - before.GetParameter
			if tt.requests != 0 && served != tt.requests {
				t.Errorf("%d values served, want %d", served, tt.requests)
			}
		})
	}
}

// An endpoint that never answers (a VPC without a route to AWS) costs the
// init the timeout and no more, and the error says what to do about it.
func TestFetchTimesOut(t *testing.T) {
	s := fakeaws.Start(fakeaws.Config{})
	defer s.Close()
	s.PutSecret("loki", "pw")
	s.SetFault(fakeaws.Fault{Hang: true})
	r, err := New(fetchEnv(s, "LOKI_PASSWORD_SECRET_ARN=loki"), settings, Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = r.Fetch(t.Context())
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "LOKI_PASSWORD_SECRET_ARN") || !strings.Contains(err.Error(), "SECRETS_TIMEOUT_MS") ||
		!strings.Contains(err.Error(), "VPC endpoint (com.amazonaws.eu-west-3.secretsmanager)") {
		t.Fatalf("error %v", err)
	}
	// Generous: the point is that the hang does not run on to the HTTP
	// client's own timeouts.
	if took > 2*time.Second {
		t.Fatalf("the fetch took %s with a 200 ms timeout", took)
	}
}

// Refresh fetches again at once the first time, then at most once per
// RefreshEvery, and says whether the values changed.
func TestRefresh(t *testing.T) {
	s := fakeaws.Start(fakeaws.Config{})
	defer s.Close()
	arn := s.PutSecret("loki", "old")
	now := time.Now()
	clock := func() time.Time { return now }
	r, err := New(fetchEnv(s, "LOKI_PASSWORD_SECRET_ARN="+arn), settings, Options{RefreshEvery: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Fetch(t.Context()); err != nil {
		t.Fatal(err)
	}
	lookup := r.Lookup(env())
	steps := []struct {
		advance time.Duration
		value   string // the secret's value from now on, "" to keep it
		fault   fakeaws.Fault
		want    Refreshed
		wantErr bool
		inUse   string
		fetches int64 // GetSecretValue served so far
	}{
		{value: "new", want: Changed, inUse: "new", fetches: 2},
		{advance: 30 * time.Second, value: "newer", want: NotYet, inUse: "new", fetches: 2},
		{advance: 31 * time.Second, want: Changed, inUse: "newer", fetches: 3},
		{advance: time.Minute, want: Unchanged, inUse: "newer", fetches: 4},
		{advance: time.Minute, fault: fakeaws.Fault{Code: "AccessDeniedException"}, want: Unchanged, wantErr: true, inUse: "newer", fetches: 4},
		{advance: time.Second, want: NotYet, inUse: "newer", fetches: 4},
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		if st.value != "" {
			s.PutSecret("loki", st.value)
		}
		s.SetFault(st.fault)
		got, err := r.Refresh(t.Context())
		if got != st.want || (err != nil) != st.wantErr {
			t.Fatalf("step %d: Refresh = %v, %v; want %v (error %v)", i, got, err, st.want, st.wantErr)
		}
		if v, _ := lookup("LOKI_PASSWORD"); v != st.inUse {
			t.Fatalf("step %d: in use %q, want %q", i, v, st.inUse)
		}
		if n := s.Stats().GetSecretValue; n != st.fetches {
			t.Fatalf("step %d: %d fetches, want %d", i, n, st.fetches)
		}
	}
}

func TestPick(t *testing.T) {
	ref := Ref{Setting: Setting{Name: "LOKI_PASSWORD", Key: "password"}, Variable: "LOKI_PASSWORD_SECRET_ARN"}
	tests := []struct {
		raw, key, want, wantErr string
	}{
		{raw: "pw", want: "pw"},
		{raw: "{not json", want: "{not json"},
		{raw: ` {"password":"p"} `, want: "p"},
		{raw: `{"password":"p","other":"o"}`, key: "other", want: "o"},
		{raw: `{"password":12.50}`, want: "12.50"},
		{raw: `{"password":true}`, wantErr: `the key "password" of the JSON object holds neither a string nor a number`},
		{raw: `{"password":""}`, wantErr: `the key "password" of the JSON object is empty`},
		{raw: "  ", wantErr: "the value is empty"},
	}
	for _, tt := range tests {
		r := ref
		r.Key = tt.key
		got, err := pick(tt.raw, r)
		switch {
		case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
			t.Errorf("pick(%q, %q) error %v, want %q", tt.raw, tt.key, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("pick(%q, %q) = %q, %v; want %q", tt.raw, tt.key, got, err, tt.want)
		}
	}
}

// SnapStart functions have no credentials in the environment: they come
// from the container credentials endpoint, which wants its token.
func TestContainerCredentials(t *testing.T) {
	roleCreds := aws.Credentials{AccessKeyID: "ASIACONTAINERKEY", SecretAccessKey: "container-secret", SessionToken: "container-token"}
	s := fakeaws.Start(fakeaws.Config{Credentials: roleCreds})
	defer s.Close()
	arn := s.PutSecret("loki", "pw")
	var calls atomic.Int64
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "the-auth-token" {
			http.Error(w, "bad token", http.StatusForbidden)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"AccessKeyId": roleCreds.AccessKeyID, "SecretAccessKey": roleCreds.SecretAccessKey,
			"Token": roleCreds.SessionToken, "Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	}))
	defer endpoint.Close()
	for _, token := range []string{"the-auth-token", "wrong-token"} {
		t.Run(token, func(t *testing.T) {
			lookup := env("AWS_REGION="+s.Region(), "AWS_ENDPOINT_URL="+s.URL(), "AWS_CONTAINER_CREDENTIALS_FULL_URI="+endpoint.URL+"/creds",
				"AWS_CONTAINER_AUTHORIZATION_TOKEN="+token, "LOKI_PASSWORD_SECRET_ARN="+arn)
			r, err := New(lookup, settings, Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = r.Fetch(t.Context())
			if token == "wrong-token" {
				if err == nil || !strings.Contains(err.Error(), "AWS_CONTAINER_CREDENTIALS_FULL_URI: answered 403") || strings.Contains(err.Error(), token) {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := r.Lookup(lookup)("LOKI_PASSWORD"); v != "pw" {
				t.Fatalf("LOKI_PASSWORD = %q", v)
			}
			// The credentials are kept until shortly before they expire.
			n := calls.Load()
			if err := r.Fetch(t.Context()); err != nil || calls.Load() != n {
				t.Fatalf("second fetch: %v, %d calls to the credentials endpoint after %d", err, calls.Load(), n)
			}
		})
	}
}

func TestErrorIsTyped(t *testing.T) {
	_, err := Refs(env("LOKI_URL_SECRET_ARN=a", "LOKI_URL_SSM_NAME=b"), settings)
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != 1 {
		t.Fatalf("error %v is not a *secrets.Error with one problem", err)
	}
}
