package lifecycle

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/internal/envtest"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/internal/fakeaws"
	"github.com/sirupsen/logrus"
)

func lookupOf(pairs []string) config.LookupFunc { return envtest.Lookup(pairs...) }

func TestLoadSecrets(t *testing.T) {
	aws := fakeaws.Start(fakeaws.Config{})
	defer aws.Close()
	arn := aws.PutSecret("loki", `{"username":"u","password":"glc_first-value"}`)
	base := append(aws.Env(), "LOKI_URL=https://loki.example.com/loki/api/v1/push")
	earlier := errors.New("invalid configuration: LOKI_URL: neither LOKI_URL nor LOKI_IP is set")
	tests := []struct {
		name      string
		env       []string
		cfgErr    error // from the load before the secrets
		wantErr   string
		wantPass  string
		wantAsked bool // whether AWS was called
	}{
		{name: "nothing kept in AWS: the first load stands", env: []string{"LOKI_PASSWORD=plain"}, cfgErr: earlier, wantErr: earlier.Error()},
		{name: "kept in AWS", env: []string{"LOKI_USERNAME_SECRET_ARN=" + arn, "LOKI_PASSWORD_SECRET_ARN=" + arn}, cfgErr: earlier, wantPass: "glc_first-value", wantAsked: true},
		{name: "not found", env: []string{"LOKI_USERNAME=u", "LOKI_PASSWORD_SECRET_ARN=" + arn + "x"},
			wantErr: "invalid configuration: LOKI_PASSWORD_SECRET_ARN: Secrets Manager GetSecretValue", wantAsked: true},
		{name: "conflict", env: []string{"LOKI_PASSWORD=plain", "LOKI_PASSWORD_SSM_NAME=/p"}, wantErr: "invalid configuration: LOKI_PASSWORD_SSM_NAME: LOKI_PASSWORD is set too"},
		{name: "the rest of the configuration is judged with the values", env: []string{"LOKI_PASSWORD_SECRET_ARN=" + arn},
			wantErr: "LOKI_USERNAME: must be set when LOKI_PASSWORD is set", wantPass: "glc_first-value", wantAsked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			log := logrus.New()
			log.SetOutput(&out)
			log.SetLevel(logrus.DebugLevel)
			before := aws.Stats().Requests
			cfg, err := loadSecrets(t.Context(), lookupOf(append(base, tt.env...)), config.Config{}, tt.cfgErr, log)
			if asked := aws.Stats().Requests > before; asked != tt.wantAsked {
				t.Errorf("AWS called: %v, want %v", asked, tt.wantAsked)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if cfg.Loki.Password != tt.wantPass {
				t.Errorf("password %q, want %q", cfg.Loki.Password, tt.wantPass)
			}
			if (cfg.Loki.Reauth != nil) != (err == nil && tt.wantPass != "") {
				t.Errorf("Reauth set: %v", cfg.Loki.Reauth != nil)
			}
			if strings.Contains(out.String()+errString(err), "glc_first-value") {
				t.Fatalf("the value was printed:\n%s%v", out.String(), err)
			}
		})
	}
}

// After a rotation, Reauth hands over the new credentials once; asked again
// at once it has nothing new, and says nothing.
func TestReauthAfterRotation(t *testing.T) {
	aws := fakeaws.Start(fakeaws.Config{})
	defer aws.Close()
	arn := aws.PutSecret("loki", "glc_old-value")
	var out bytes.Buffer
	log := logrus.New()
	log.SetOutput(&out)
	cfg, err := loadSecrets(t.Context(), lookupOf(append(aws.Env(), "LOKI_URL=https://loki.example.com/push", "LOKI_USERNAME=u", "LOKI_PASSWORD_SECRET_ARN="+arn)),
		config.Config{}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	aws.PutSecret("loki", "glc_new-value")
	creds, ok := cfg.Loki.Reauth(t.Context())
	if !ok || creds.Password != "glc_new-value" || creds.Username != "u" || creds.URL != "https://loki.example.com/push" {
		t.Fatalf("Reauth = %+v, %v", creds, ok)
	}
	if !strings.Contains(out.String(), "fetched new ones from LOKI_PASSWORD_SECRET_ARN") {
		t.Fatalf("log:\n%s", out.String())
	}
	out.Reset()
	if _, ok := cfg.Loki.Reauth(t.Context()); ok || out.Len() != 0 {
		t.Fatalf("a second Reauth at once: %v; log:\n%s", ok, out.String())
	}
	if n := aws.Stats().GetSecretValue; n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
