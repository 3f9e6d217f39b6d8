package loki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParsePushURL checks a push URL: http or https, with a host and a numeric
// port if any, and nothing after the host that looks like misplaced
// credentials. Its errors never repeat the URL, which may hold a password
// or a token.
func ParsePushURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		// url's error repeats the input.
		return nil, errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		// Not even the scheme is quoted: without "https://", url reads
		// "user:password@host" as the scheme "user".
		return nil, errors.New("must begin with http:// or https://")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("has no host")
	case strings.Contains(u.Host+u.Path+u.RawQuery+u.Fragment, "@"):
		// https://user:pa/ss@host parses as host "user:pa" and path
		// "/ss@host": the password would be sent in the path, and logged.
		return nil, errors.New("holds an '@' after the host: percent-encode '/', '?', '#' and '@' in a user name or password (%2F, %3F, %23, %40), or give the credentials in their own settings")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, errors.New("has a port that is not a number from 1 to 65535")
		}
	}
	return u, nil
}

// ValidateHeaderValue checks that v can be sent as an HTTP header value:
// a newline or another control character would make every request fail to
// be built.
func ValidateHeaderValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("holds a control character at byte %d (a newline, perhaps), which an HTTP header cannot carry", i)
		}
	}
	return nil
}

// LoadCAs returns the system's certificate pool with the PEM certificates of
// file added.
func LoadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Loki's default limits on a label (max_label_name_length and
// max_label_value_length): a longer one makes Loki refuse every push.
const (
	MaxLabelNameLength  = 1024
	MaxLabelValueLength = 2048
)

// ValidateLabel checks a label's name and value against Loki's rules and
// default limits.
func ValidateLabel(name, value string) error {
	if err := ValidateLabelName(name); err != nil {
		return err
	}
	if len(value) > MaxLabelValueLength {
		return fmt.Errorf("label %q: value of %d bytes is longer than Loki's limit of %d", name, len(value), MaxLabelValueLength)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("label %q: value is not valid UTF-8", name)
	}
	return nil
}

// ValidateLabelName checks a label name against Loki's rules.
func ValidateLabelName(name string) error {
	if name == "" {
		return errors.New("label name is empty")
	}
	if len(name) > MaxLabelNameLength {
		return fmt.Errorf("label name of %d bytes is longer than Loki's limit of %d", len(name), MaxLabelNameLength)
	}
	if strings.HasPrefix(name, "__") {
		return fmt.Errorf("label name %q: names starting with __ are reserved", name)
	}
	for i, r := range name {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("label name %q must match [a-zA-Z_][a-zA-Z0-9_]*", name)
		}
	}
	return nil
}

// redactURL is the push URL as messages show it: scheme, host and path;
// no user info, query or fragment, which may hold a token.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// redactLocation makes a URL from an answer (a redirect's Location) safe
// to log.
func redactLocation(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return "an unreadable location"
	}
	return redactURL(u)
}
