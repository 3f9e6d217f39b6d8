// Package fakeaws is a strict local stand-in for the two AWS calls the
// extension makes, Secrets Manager's GetSecretValue and SSM's GetParameter,
// for tests that cannot reach AWS.
//
// It is strict where AWS is: every request must carry a SigV4 signature made
// with the test credentials, the right service name and region, a fresh
// date and, when the credentials have one, the session token; the signature
// is recomputed with the AWS SDK's signer over the request as received (the
// body's hash included) and compared. Anything else is refused with the
// error AWS gives. A SecureString parameter's value is returned in the clear
// only when decryption is asked for.
package fakeaws

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Test credentials, in the shape of a Lambda role's temporary ones.
const (
	AccessKeyID     = "ASIAFAKEAWSTESTKEY01"
	SecretAccessKey = "fakeaws/test/secret/access/key/0123456789"
	SessionToken    = "FwoGZXIvYXdzEfakeaws-session-token-for-tests"
	Region          = "eu-west-3"
	Account         = "123456789012"
)

// Credentials are the test credentials the server accepts by default.
var Credentials = aws.Credentials{AccessKeyID: AccessKeyID, SecretAccessKey: SecretAccessKey, SessionToken: SessionToken}

// Config configures a Server; zero values take the test constants.
type Config struct {
	Region      string
	Credentials aws.Credentials
	// Now is the clock the request's date is checked against.
	Now func() time.Time
}

// Fault makes the server misbehave after a request's signature passed.
type Fault struct {
	// Code answers every request with this AWS error, such as
	// ThrottlingException or AccessDeniedException.
	Code string
	// Hang never answers, until the fault changes or the client gives up.
	Hang bool
}

// Stats count requests.
type Stats struct {
	// Requests is every request; Refused is those refused for their
	// signature or credentials.
	Requests, Refused int64
	// GetSecretValue and GetParameter count the calls answered with a value.
	GetSecretValue, GetParameter int64
}

// Server is a running stand-in; its methods may be called from any goroutine.
type Server struct {
	cfg    Config
	srv    *httptest.Server
	signer *v4.Signer

	mu      sync.Mutex
	secrets map[string]*secret // by name
	params  map[string]*param  // by name
	denied  map[string]bool    // IDs the role may not read
	fault   Fault
	changed chan struct{}

	requests, refused, secretCalls, paramCalls atomic.Int64
}

type secret struct {
	name, arn, version string
	value              string
	binary             bool
}

type param struct {
	name, value string
	secure      bool
	version     int
}

// Start runs a server on the loopback.
func Start(cfg Config) *Server {
	if cfg.Region == "" {
		cfg.Region = Region
	}
	if cfg.Credentials.AccessKeyID == "" {
		cfg.Credentials = Credentials
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, signer: v4.NewSigner(), secrets: map[string]*secret{}, params: map[string]*param{},
		denied: map[string]bool{}, changed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the endpoint, for AWS_ENDPOINT_URL.
func (s *Server) URL() string { return s.srv.URL }

// Region is the region the server signs for.
func (s *Server) Region() string { return s.cfg.Region }

// Env is the environment a client needs to reach the server with the test
// credentials, as KEY=value pairs.
func (s *Server) Env() []string {
	c := s.cfg.Credentials
	return []string{"AWS_ENDPOINT_URL=" + s.URL(), "AWS_REGION=" + s.cfg.Region,
		"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken}
}

// Close stops the server, releasing hung requests.
func (s *Server) Close() {
	s.SetFault(Fault{})
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// PutSecret creates a secret or gives it a new value (a rotation), and
// returns its ARN, which ends in a random suffix as AWS's do.
func (s *Server) PutSecret(name, value string) string {
	return s.put(name, value, false)
}

// PutBinarySecret is PutSecret for a SecretBinary.
func (s *Server) PutBinarySecret(name string, value []byte) string {
	return s.put(name, string(value), true)
}

func (s *Server) put(name, value string, binary bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[name]
	if sec == nil {
		sec = &secret{name: name, arn: fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", s.cfg.Region, Account, name, randomID(6))}
		s.secrets[name] = sec
	}
	sec.value, sec.binary, sec.version = value, binary, randomID(32)
	return sec.arn
}

// PutParameter creates a parameter or gives it a new value, and returns
// its ARN. A secure one is a SecureString.
func (s *Server) PutParameter(name, value string, secure bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.params[name]
	if p == nil {
		p = &param{name: name}
		s.params[name] = p
	}
	p.value, p.secure = value, secure
	p.version++
	return s.paramARN(name)
}

func (s *Server) paramARN(name string) string {
	return fmt.Sprintf("arn:aws:ssm:%s:%s:parameter/%s", s.cfg.Region, Account, strings.TrimPrefix(name, "/"))
}

// Deny makes reading a secret or parameter (by the ID a client sends)
// fail with AccessDeniedException, as a role without the permission would.
func (s *Server) Deny(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.denied[id] = true
}

// SetFault changes how the server misbehaves; the zero Fault serves normally.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	close(s.changed)
	s.changed = make(chan struct{})
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), Refused: s.refused.Load(), GetSecretValue: s.secretCalls.Load(), GetParameter: s.paramCalls.Load()}
}

// Error is an error answer in the AWS JSON protocol.
type Error struct {
	Status        int
	Code, Message string
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, Error{http.StatusBadRequest, "SerializationException", "unreadable body"})
		return
	}
	var service string
	switch r.Header.Get("X-Amz-Target") {
	case "secretsmanager.GetSecretValue":
		service = "secretsmanager"
	case "AmazonSSM.GetParameter":
		service = "ssm"
	}
	if e := s.Verify(r, body, service); e != nil {
		s.refused.Add(1)
		writeError(w, *e)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		writeError(w, Error{http.StatusBadRequest, "SerializationException", "want a POST of application/x-amz-json-1.1"})
		return
	}
	if service == "" {
		writeError(w, Error{http.StatusBadRequest, "UnknownOperationException", "this stand-in serves secretsmanager.GetSecretValue and AmazonSSM.GetParameter"})
		return
	}
	s.mu.Lock()
	fault, changed := s.fault, s.changed
	s.mu.Unlock()
	switch {
	case fault.Hang:
		select {
		case <-changed:
		case <-r.Context().Done():
		}
		return
	case fault.Code != "":
		status := http.StatusBadRequest
		if strings.HasPrefix(fault.Code, "Internal") {
			status = http.StatusInternalServerError
		}
		writeError(w, Error{status, fault.Code, "injected " + fault.Code})
		return
	}
	if service == "secretsmanager" {
		s.getSecretValue(w, body)
	} else {
		s.getParameter(w, body)
	}
}

func (s *Server) getSecretValue(w http.ResponseWriter, body []byte) {
	var in struct {
		SecretID *string `json:"SecretId"`
	}
	if json.Unmarshal(body, &in) != nil || in.SecretID == nil || *in.SecretID == "" {
		writeError(w, Error{http.StatusBadRequest, "InvalidParameterException", "SecretId is required"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.denied[*in.SecretID] {
		writeError(w, Error{http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf(
			"User: arn:aws:sts::%s:assumed-role/test-role/test is not authorized to perform: secretsmanager:GetSecretValue on resource: %s because no identity-based policy allows the secretsmanager:GetSecretValue action", Account, *in.SecretID)})
		return
	}
	var sec *secret
	for _, c := range s.secrets {
		// A name, the full ARN, or the ARN without its random suffix.
		if *in.SecretID == c.name || *in.SecretID == c.arn || *in.SecretID == c.arn[:len(c.arn)-7] {
			sec = c
		}
	}
	if sec == nil {
		writeError(w, Error{http.StatusBadRequest, "ResourceNotFoundException", "Secrets Manager can't find the specified secret."})
		return
	}
	s.secretCalls.Add(1)
	out := map[string]any{"ARN": sec.arn, "Name": sec.name, "VersionId": sec.version, "VersionStages": []string{"AWSCURRENT"},
		"CreatedDate": float64(time.Now().UnixMilli()) / 1000}
	if sec.binary {
		out["SecretBinary"] = []byte(sec.value) // base64 in JSON
	} else {
		out["SecretString"] = sec.value
	}
	writeJSON(w, out)
}

func (s *Server) getParameter(w http.ResponseWriter, body []byte) {
	var in struct {
		Name           *string
		WithDecryption bool
	}
	if json.Unmarshal(body, &in) != nil || in.Name == nil || *in.Name == "" {
		writeError(w, Error{http.StatusBadRequest, "ValidationException", "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.denied[*in.Name] {
		writeError(w, Error{http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf(
			"User: arn:aws:sts::%s:assumed-role/test-role/test is not authorized to perform: ssm:GetParameter on resource: %s", Account, *in.Name)})
		return
	}
	var p *param
	for _, c := range s.params {
		if *in.Name == c.name || *in.Name == s.paramARN(c.name) {
			p = c
		}
	}
	if p == nil {
		writeError(w, Error{http.StatusBadRequest, "ParameterNotFound", ""})
		return
	}
	s.paramCalls.Add(1)
	typ, value := "String", p.value
	if p.secure {
		typ = "SecureString"
		if !in.WithDecryption {
			// What AWS returns then is the KMS ciphertext, base64.
			sum := sha256.Sum256([]byte(p.value))
			value = "AQICAHh" + hex.EncodeToString(sum[:])
		}
	}
	writeJSON(w, map[string]any{"Parameter": map[string]any{"Name": p.name, "Type": typ, "Value": value, "Version": p.version,
		"ARN": s.paramARN(p.name), "DataType": "text", "LastModifiedDate": float64(time.Now().UnixMilli()) / 1000}})
}

// Messages AWS gives for refused signatures.
const (
	msgBadSignature = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgBadToken     = "The security token included in the request is invalid."
)

// maxSkew is how far a request's date may be from the server's clock.
const maxSkew = 5 * time.Minute

// Verify checks a request's SigV4 signature for the service, with body as
// the request's body; it returns the error AWS would answer, or nil.
func (s *Server) Verify(r *http.Request, body []byte, service string) *Error {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return &Error{http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token"}
	}
	fields, ok := parseAuthorization(auth)
	if !ok {
		return &Error{http.StatusBadRequest, "IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' of an AWS4-HMAC-SHA256 signature"}
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 5 || scope[4] != "aws4_request" {
		return &Error{http.StatusBadRequest, "IncompleteSignatureException", "Credential must be <key>/<date>/<region>/<service>/aws4_request"}
	}
	creds := s.cfg.Credentials
	if scope[0] != creds.AccessKeyID {
		return &Error{http.StatusForbidden, "UnrecognizedClientException", msgBadToken}
	}
	if creds.SessionToken != "" && r.Header.Get("X-Amz-Security-Token") != creds.SessionToken {
		return &Error{http.StatusForbidden, "UnrecognizedClientException", msgBadToken}
	}
	stamp := r.Header.Get("X-Amz-Date")
	signed, err := time.Parse("20060102T150405Z", stamp)
	if err != nil {
		return &Error{http.StatusBadRequest, "IncompleteSignatureException", "X-Amz-Date is missing or not in the ISO 8601 basic format"}
	}
	now := s.cfg.Now()
	switch {
	case signed.Before(now.Add(-maxSkew)) || signed.After(now.Add(maxSkew)):
		return &Error{http.StatusForbidden, "InvalidSignatureException", "Signature expired: " + stamp + " is now earlier or later than the allowed 5 minutes"}
	case scope[1] != stamp[:8]:
		return &Error{http.StatusForbidden, "InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP"}
	case scope[2] != s.cfg.Region:
		return &Error{http.StatusForbidden, "InvalidSignatureException", fmt.Sprintf("Credential should be scoped to a valid region, not '%s'.", scope[2])}
	case service != "" && scope[3] != service:
		return &Error{http.StatusForbidden, "InvalidSignatureException", fmt.Sprintf("Credential should be scoped to correct service: '%s'.", service)}
	}
	signedHeaders := strings.Split(fields["SignedHeaders"], ";")
	for _, h := range []string{"host", "x-amz-date", "x-amz-target", "content-type"} {
		if !slices.Contains(signedHeaders, h) {
			return &Error{http.StatusForbidden, "InvalidSignatureException", "the signature must cover the " + h + " header"}
		}
	}
	if creds.SessionToken != "" && !slices.Contains(signedHeaders, "x-amz-security-token") {
		return &Error{http.StatusForbidden, "InvalidSignatureException", msgBadSignature}
	}

	// Sign again what arrived, with the secret key, and compare.
	again, err := s.signAgain(r, body, signedHeaders, creds, scope[3], scope[2], signed)
	if err != nil {
		return &Error{http.StatusBadRequest, "SerializationException", "unreadable request"}
	}
	want, _ := parseAuthorization(again)
	if want["SignedHeaders"] != fields["SignedHeaders"] || !hmac.Equal([]byte(want["Signature"]), []byte(fields["Signature"])) {
		return &Error{http.StatusForbidden, "InvalidSignatureException", msgBadSignature}
	}
	return nil
}

// signAgain signs, with the SDK's signer and creds, a copy of what r's
// signature covers (method, path, query, the signed headers and the hash
// of body as received), and returns the Authorization header it makes.
func (s *Server) signAgain(r *http.Request, body []byte, signedHeaders []string, creds aws.Credentials, service, region string, at time.Time) (string, error) {
	again, err := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return "", err
	}
	again.Host = r.Host
	for _, h := range signedHeaders {
		switch h {
		case "host":
		case "content-length":
			again.ContentLength = r.ContentLength
		default:
			again.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	hash := sha256.Sum256(body)
	if err := s.signer.SignHTTP(r.Context(), creds, again, hex.EncodeToString(hash[:]), service, region, at); err != nil {
		return "", err
	}
	return again.Header.Get("Authorization"), nil
}

// parseAuthorization splits "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
// Signature=…" into its fields.
func parseAuthorization(auth string) (map[string]string, bool) {
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return nil, false
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, false
		}
		fields[k] = v
	}
	for _, k := range []string{"Credential", "SignedHeaders", "Signature"} {
		if fields[k] == "" {
			return nil, false
		}
	}
	return fields, true
}

func writeError(w http.ResponseWriter, e Error) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", randomID(32))
	w.WriteHeader(e.Status)
	// Services differ in the case of "message"; the namespace before '#'
	// is how some send the type.
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.fake#" + e.Code, "message": e.Message})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", randomID(32))
	_ = json.NewEncoder(w).Encode(v)
}

func randomID(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}
