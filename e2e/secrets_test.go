package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/fakeaws"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// fakeAWS starts the strict Secrets Manager and Parameter Store stand-in.
func fakeAWS(t *testing.T) *fakeaws.Server {
	t.Helper()
	s := fakeaws.Start(fakeaws.Config{})
	t.Cleanup(s.Close)
	return s
}

// noSecretsIn fails the test if the extension's output holds any of the
// values, or the role's secret key or session token.
func noSecretsIn(t *testing.T, out string, values ...string) {
	t.Helper()
	for _, v := range append(values, fakeaws.SecretAccessKey, fakeaws.SessionToken) {
		if strings.Contains(out, v) {
			t.Fatalf("the extension's output holds the secret %q:\n%s", v, out)
		}
	}
}

// The Loki password kept only in AWS, behind a gateway that checks it:
// every line lands, the value is fetched once, and never printed.
func TestSecretsKeepTheCredentials(t *testing.T) {
	srv := e2etest.Loki(t)
	aws := fakeAWS(t)
	const user, password = "1234567", "glc_e2e-kept-in-aws-Zq8"
	p := proxy(t, faultproxy.Config{Upstream: srv.URL(), Username: user, Password: password})
	plain := aws.PutSecret("loki-plain", password)
	both := aws.PutSecret("loki-json", `{"username":"`+user+`","password":"`+password+`"}`)
	other := aws.PutSecret("loki-other-keys", `{"user":"`+user+`","pass":"`+password+`"}`)
	aws.PutParameter("/loki/password", password, true)
	withUserinfo := aws.PutSecret("loki-url", strings.Replace(p.URL(), "http://", "http://"+user+":"+password+"@", 1)+"/loki/api/v1/push")
	tests := []struct {
		name string
		env  []string
	}{
		{"plain secret", []string{"LOKI_USERNAME=" + user, "LOKI_PASSWORD_SECRET_ARN=" + plain}},
		{"JSON secret, keys named after the settings", []string{"LOKI_USERNAME_SECRET_ARN=" + both, "LOKI_PASSWORD_SECRET_ARN=" + both}},
		{"JSON secret, keys picked with #", []string{"LOKI_USERNAME_SECRET_ARN=" + other + "#user", "LOKI_PASSWORD_SECRET_ARN=" + other + "#pass"}},
		{"SecureString parameter", []string{"LOKI_USERNAME=" + user, "LOKI_PASSWORD_SSM_NAME=/loki/password"}},
		// run sets LOKI_URL; a blank value is no value.
		{"URL with userinfo in a secret", []string{"LOKI_URL=", "LOKI_URL_SECRET_ARN=" + withUserinfo}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := aws.Stats()
			o := run(t, script{
				pushURL: p.URL() + "/loki/api/v1/push",
				env:     append(aws.Env(), tt.env...),
				invokes: 3, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 5},
			})
			if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
				t.Fatalf("delivery: %s", d)
			}
			noSecretsIn(t, o.sb.ExtensionOutput(), password)
			after := aws.Stats()
			// One request per secret or parameter, made once, at init.
			if served := after.GetSecretValue + after.GetParameter - before.GetSecretValue - before.GetParameter; served != 1 || after.Refused != before.Refused {
				t.Fatalf("%d values served (want 1), %d requests refused", served, after.Refused-before.Refused)
			}
		})
	}
}

// A secret that cannot be fetched: one error naming the variable and AWS's
// error code, then the function keeps working (degraded mode), or with
// STRICT_CONFIG the init fails with that error.
func TestSecretThatCannotBeFetched(t *testing.T) {
	aws := fakeAWS(t)
	arn := aws.PutSecret("loki", "glc_never-fetched")
	denied := aws.PutSecret("loki-denied", "glc_denied-value")
	aws.Deny(denied)
	tests := []struct {
		name     string
		env      []string
		wantCode string
	}{
		{"wrong ARN", []string{"LOKI_PASSWORD_SECRET_ARN=" + arn + "x"}, "ResourceNotFoundException"},
		{"no permission", []string{"LOKI_PASSWORD_SECRET_ARN=" + denied}, "AccessDeniedException"},
		{"no session token", []string{"LOKI_PASSWORD_SECRET_ARN=" + arn, "AWS_SESSION_TOKEN="}, "UnrecognizedClientException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append(aws.Env(), append([]string{"LOKI_USERNAME=u"}, tt.env...)...)
			o := run(t, script{env: env, invokes: 2, gap: 50 * time.Millisecond, fn: sandbox.Function{Lines: 3}})
			for i, inv := range o.invokes {
				if inv.PostRuntime > 500*time.Millisecond {
					t.Errorf("invoke %d: the degraded extension held the function %s", i, inv.PostRuntime)
				}
			}
			out := o.sb.ExtensionOutput()
			for _, want := range []string{"LOKI_PASSWORD_SECRET_ARN: Secrets Manager GetSecretValue", tt.wantCode, "shipping no logs"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(out, "invalid configuration"); n != 1 {
				t.Errorf("the error was logged %d times, want once:\n%s", n, out)
			}
			noSecretsIn(t, out, "glc_never-fetched", "glc_denied-value")
		})
	}

	t.Run("strict", func(t *testing.T) {
		env := append(e2etest.Env(t, "http://127.0.0.1:1/loki/api/v1/push", "STRICT_CONFIG=true", "LOKI_USERNAME=u", "LOKI_PASSWORD_SECRET_ARN="+arn+"x"), aws.Env()...)
		_, err := sandbox.Start(t.Context(), sandbox.Config{ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t), Env: env})
		var extErr *sandbox.ExtensionError
		if !errors.As(err, &extErr) || extErr.Type != "Extension.InitError" || extErr.ReportedType != "Extension.ConfigInvalid" ||
			!strings.Contains(extErr.Message, "LOKI_PASSWORD_SECRET_ARN") || !strings.Contains(extErr.Message, "ResourceNotFoundException") {
			t.Fatalf("want an init error naming LOKI_PASSWORD_SECRET_ARN and ResourceNotFoundException, got %v", err)
		}
	})
}

// The secret rotates between two invocations and the gateway starts
// refusing the old password: the first push after it is refused once, the
// secret is fetched again once, and every line lands.
func TestSecretRotation(t *testing.T) {
	srv := e2etest.Loki(t)
	aws := fakeAWS(t)
	const user, oldPassword, newPassword = "1234567", "glc_before-rotation-Q1", "glc_after-rotation-W2"
	p := proxy(t, faultproxy.Config{Upstream: srv.URL(), Username: user, Password: oldPassword})
	arn := aws.PutSecret("loki", `{"username":"`+user+`","password":"`+oldPassword+`"}`)
	o := run(t, script{
		pushURL: p.URL() + "/loki/api/v1/push",
		env:     append(aws.Env(), "LOKI_USERNAME_SECRET_ARN="+arn, "LOKI_PASSWORD_SECRET_ARN="+arn),
		invokes: 4, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 5},
		beforeInvoke: func(i int) {
			if i == 2 {
				aws.PutSecret("loki", `{"username":"`+user+`","password":"`+newPassword+`"}`)
				p.SetCredentials(user, newPassword)
			}
		},
	})
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() || d.Written != 20 {
		t.Fatalf("delivery: %s", d)
	}
	out := o.sb.ExtensionOutput()
	if got := aws.Stats(); got.GetSecretValue != 2 || got.Refused != 0 {
		t.Fatalf("the secret was served %d times (want 2: init and one re-fetch), %d requests refused", got.GetSecretValue, got.Refused)
	}
	if n := p.Stats().AuthFailures; n != 1 {
		t.Fatalf("the gateway refused %d pushes, want 1", n)
	}
	if !strings.Contains(out, "fetched new ones from LOKI_USERNAME_SECRET_ARN, LOKI_PASSWORD_SECRET_ARN") || strings.Contains(out, "Loki rejected") || !strings.Contains(out, "rejected=0") {
		t.Fatalf("output:\n%s", out)
	}
	noSecretsIn(t, out, oldPassword, newPassword)
	t.Logf("post-runtime overhead of the invocation after the rotation (one refused push, one re-fetch, one push): %s", o.invokes[2].PostRuntime)
}
