package fakeaws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// request is one call as a client would make it; sign decides how it is
// signed, and tamper changes it afterwards.
type request struct {
	target   string
	body     string
	creds    aws.Credentials
	service  string
	region   string
	at       time.Time
	unsigned bool
	noToken  bool // sign without putting the session token in
	tamper   func(*http.Request)
}

func (s *Server) do(t *testing.T, rq request) (int, map[string]any) {
	t.Helper()
	if rq.creds.AccessKeyID == "" {
		rq.creds = Credentials
	}
	if rq.service == "" {
		rq.service = "secretsmanager"
		if strings.HasPrefix(rq.target, "AmazonSSM.") {
			rq.service = "ssm"
		}
	}
	if rq.region == "" {
		rq.region = s.Region()
	}
	if rq.at.IsZero() {
		rq.at = time.Now()
	}
	req, err := http.NewRequest(http.MethodPost, s.URL()+"/", strings.NewReader(rq.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", rq.target)
	if !rq.unsigned {
		hash := sha256.Sum256([]byte(rq.body))
		err := v4.NewSigner().SignHTTP(context.Background(), rq.creds, req, hex.EncodeToString(hash[:]), rq.service, rq.region, rq.at,
			func(o *v4.SignerOptions) { o.DisableSessionToken = rq.noToken })
		if err != nil {
			t.Fatal(err)
		}
	}
	if rq.tamper != nil {
		rq.tamper(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

const getSecret = "secretsmanager.GetSecretValue"

// The stand-in must refuse every request a real AWS endpoint refuses for its
// signature or credentials; otherwise a client that signs wrongly, or not
// at all, would pass the tests.
func TestRefusesBadSignatures(t *testing.T) {
	s := Start(Config{})
	defer s.Close()
	arn := s.PutSecret("loki", "s3cr3t")
	body := `{"SecretId":"` + arn + `"}`
	tests := []struct {
		name     string
		rq       request
		wantCode string
	}{
		{"unsigned", request{unsigned: true}, "MissingAuthenticationTokenException"},
		{"wrong secret key", request{creds: aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: "wrong", SessionToken: SessionToken}}, "InvalidSignatureException"},
		{"unknown access key", request{creds: aws.Credentials{AccessKeyID: "ASIAOTHERKEY", SecretAccessKey: SecretAccessKey, SessionToken: SessionToken}}, "UnrecognizedClientException"},
		{"session token missing", request{noToken: true}, "UnrecognizedClientException"},
		{"session token wrong", request{creds: aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, SessionToken: "other"}}, "UnrecognizedClientException"},
		{"session token added unsigned", request{noToken: true, tamper: func(r *http.Request) { r.Header.Set("X-Amz-Security-Token", SessionToken) }}, "InvalidSignatureException"},
		{"body changed after signing", request{tamper: func(r *http.Request) {
			b := `{"SecretId":"other"}`
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(b)), int64(len(b))
		}}, "InvalidSignatureException"},
		{"target changed after signing", request{tamper: func(r *http.Request) { r.Header.Set("X-Amz-Target", "AmazonSSM.GetParameter") }}, "InvalidSignatureException"},
		{"signed for another service", request{service: "ssm"}, "InvalidSignatureException"},
		{"signed for another region", request{region: "us-east-1"}, "InvalidSignatureException"},
		{"signed ten minutes ago", request{at: time.Now().Add(-10 * time.Minute)}, "InvalidSignatureException"},
		{"signature cut", request{tamper: func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "Signature=", "Signature=0", 1))
		}}, "InvalidSignatureException"},
		{"not SigV4", request{tamper: func(r *http.Request) { r.Header.Set("Authorization", "Bearer x") }}, "IncompleteSignatureException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats()
			tt.rq.target, tt.rq.body = getSecret, body
			status, out := s.do(t, tt.rq)
			if status < 400 || out["__type"] != "com.amazonaws.fake#"+tt.wantCode {
				t.Fatalf("answered %d %v, want %s", status, out, tt.wantCode)
			}
			if _, leaked := out["SecretString"]; leaked {
				t.Fatal("the secret was returned")
			}
			if after := s.Stats(); after.Refused != before.Refused+1 || after.GetSecretValue != before.GetSecretValue {
				t.Fatalf("stats %+v after %+v", after, before)
			}
		})
	}
	// The same request, signed properly, is served: the refusals above are
	// for what each case changed, not for something every request lacks.
	status, out := s.do(t, request{target: getSecret, body: body})
	if status != http.StatusOK || out["SecretString"] != "s3cr3t" {
		t.Fatalf("a well-signed request got %d %v", status, out)
	}
}

// The recomputation agrees with AWS's published example (the get-vanilla
// case of the SigV4 test suite), so the verifier checks SigV4 itself, not
// merely whatever the SDK's signer does.
// https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
func TestSignAgainMatchesAWSExample(t *testing.T) {
	s := Start(Config{})
	defer s.Close()
	r := httptest.NewRequest(http.MethodGet, "http://example.amazonaws.com/", nil)
	r.Header.Set("X-Amz-Date", "20150830T123600Z")
	at := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	got, err := s.signAgain(r, nil, []string{"host", "x-amz-date"},
		aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}, "service", "us-east-1", at)
	if err != nil {
		t.Fatal(err)
	}
	want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, " +
		"Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestServesSecretsAndParameters(t *testing.T) {
	s := Start(Config{})
	defer s.Close()
	arn := s.PutSecret("loki", `{"username":"1234","password":"pw"}`)
	binARN := s.PutBinarySecret("bin", []byte("binary-pw"))
	paramARN := s.PutParameter("/loki/password", "ssm-pw", true)
	s.PutParameter("plain", "visible", false)
	s.PutSecret("denied", "x")
	s.Deny("denied")

	tests := []struct {
		name, target, body string
		check              func(map[string]any) bool
	}{
		{"secret by ARN", getSecret, `{"SecretId":"` + arn + `"}`, func(o map[string]any) bool {
			return o["SecretString"] == `{"username":"1234","password":"pw"}` && o["ARN"] == arn
		}},
		{"secret by name", getSecret, `{"SecretId":"loki"}`, func(o map[string]any) bool { return o["Name"] == "loki" }},
		{"secret by partial ARN", getSecret, `{"SecretId":"` + arn[:len(arn)-7] + `"}`, func(o map[string]any) bool { return o["Name"] == "loki" }},
		{"binary secret", getSecret, `{"SecretId":"` + binARN + `"}`, func(o map[string]any) bool { return o["SecretBinary"] == "YmluYXJ5LXB3" }},
		{"unknown secret", getSecret, `{"SecretId":"nope"}`, func(o map[string]any) bool { return o["__type"] == "com.amazonaws.fake#ResourceNotFoundException" }},
		{"denied secret", getSecret, `{"SecretId":"denied"}`, func(o map[string]any) bool { return o["__type"] == "com.amazonaws.fake#AccessDeniedException" }},
		{"SecureString decrypted", "AmazonSSM.GetParameter", `{"Name":"/loki/password","WithDecryption":true}`, func(o map[string]any) bool {
			p, _ := o["Parameter"].(map[string]any)
			return p["Value"] == "ssm-pw" && p["Type"] == "SecureString"
		}},
		{"SecureString by ARN", "AmazonSSM.GetParameter", `{"Name":"` + paramARN + `","WithDecryption":true}`, func(o map[string]any) bool {
			p, _ := o["Parameter"].(map[string]any)
			return p["Value"] == "ssm-pw"
		}},
		{"SecureString without decryption", "AmazonSSM.GetParameter", `{"Name":"/loki/password"}`, func(o map[string]any) bool {
			p, _ := o["Parameter"].(map[string]any)
			return p["Value"] != "ssm-pw" && strings.HasPrefix(p["Value"].(string), "AQICAH")
		}},
		{"String", "AmazonSSM.GetParameter", `{"Name":"plain"}`, func(o map[string]any) bool {
			p, _ := o["Parameter"].(map[string]any)
			return p["Value"] == "visible"
		}},
		{"unknown parameter", "AmazonSSM.GetParameter", `{"Name":"nope","WithDecryption":true}`, func(o map[string]any) bool { return o["__type"] == "com.amazonaws.fake#ParameterNotFound" }},
		{"unknown operation", "secretsmanager.ListSecrets", `{}`, func(o map[string]any) bool { return o["__type"] == "com.amazonaws.fake#UnknownOperationException" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, out := s.do(t, request{target: tt.target, body: tt.body, service: map[bool]string{true: "ssm", false: "secretsmanager"}[strings.HasPrefix(tt.target, "AmazonSSM.")]})
			if !tt.check(out) {
				t.Fatalf("answer %v", out)
			}
		})
	}
}

func TestFaultsAndRotation(t *testing.T) {
	s := Start(Config{})
	defer s.Close()
	arn := s.PutSecret("loki", "old")
	body := `{"SecretId":"` + arn + `"}`
	s.SetFault(Fault{Code: "ThrottlingException"})
	if status, out := s.do(t, request{target: getSecret, body: body}); status != http.StatusBadRequest || out["__type"] != "com.amazonaws.fake#ThrottlingException" {
		t.Fatalf("throttling: %d %v", status, out)
	}
	s.SetFault(Fault{})
	if again := s.PutSecret("loki", "new"); again != arn {
		t.Fatalf("rotation changed the ARN: %s → %s", arn, again)
	}
	if _, out := s.do(t, request{target: getSecret, body: body}); out["SecretString"] != "new" {
		t.Fatalf("after rotation: %v", out)
	}
	if st := s.Stats(); st.GetSecretValue != 1 || st.Requests != 2 {
		t.Fatalf("stats %+v", st)
	}
	var buf bytes.Buffer
	buf.WriteString(strings.Join(s.Env(), "\n"))
	if !strings.Contains(buf.String(), "AWS_ENDPOINT_URL="+s.URL()) {
		t.Fatalf("Env: %s", buf.String())
	}
}
