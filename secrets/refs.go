// Package secrets fetches settings that are kept in AWS Secrets Manager or in
// SSM Parameter Store instead of in the function's environment.
//
// A setting such as LOKI_PASSWORD may be replaced by LOKI_PASSWORD_SECRET_ARN
// (a secret's ARN or name) or LOKI_PASSWORD_SSM_NAME (a parameter's name or
// ARN). The values are fetched once, during the extension's init, with the
// credentials Lambda gives the function, and fetched again only when Loki
// refuses them (the secret may have been rotated). Requests are signed with
// the AWS SDK's SigV4 signer and sent with net/http: the SDK's service
// clients would make the extension's binary too large for its layer.
//
// No value fetched ever appears in an error message.
package secrets

import (
	"fmt"
	"slices"
	"strings"
)

// LookupFunc reads one environment variable; os.LookupEnv is the real one.
type LookupFunc = func(name string) (string, bool)

// Suffixes of the variables that say where a setting is kept.
const (
	SecretARNSuffix = "_SECRET_ARN"
	SSMNameSuffix   = "_SSM_NAME"
)

// Setting is a configuration variable whose value may be kept in a store.
type Setting struct {
	// Name is the plain variable, such as LOKI_PASSWORD.
	Name string
	// Key is the key picked from a secret that holds a JSON object when
	// the variable names none with #key, such as "password".
	Key string
}

// Store is where a value is kept.
type Store int

const (
	// SecretsManager is AWS Secrets Manager (GetSecretValue).
	SecretsManager Store = iota + 1
	// ParameterStore is AWS Systems Manager Parameter Store (GetParameter).
	ParameterStore
)

// String names the store as AWS documentation does.
func (s Store) String() string {
	if s == ParameterStore {
		return "SSM Parameter Store"
	}
	return "Secrets Manager"
}

// Ref says where one setting is kept.
type Ref struct {
	// Setting is the setting whose value this is.
	Setting Setting
	// Variable is the variable that points at the store, such as
	// LOKI_PASSWORD_SECRET_ARN: errors name it.
	Variable string
	// Store and ID say what to fetch: a secret's ARN or name, or a
	// parameter's name or ARN (with an optional :version or :label).
	Store Store
	ID    string
	// Key is the JSON key to pick, given after '#', or empty.
	Key string
}

// key is the JSON key to pick from a JSON object value.
func (r Ref) key() string {
	if r.Key != "" {
		return r.Key
	}
	return r.Setting.Key
}

// Refs reads which of the settings are kept in a store. It reports every
// variable that is wrong at once: both forms set for one setting, a form
// set together with the plain value, or an ID that is empty or ends in '#'.
// Neither an ARN nor a secret's or parameter's name can hold '#', so what
// follows one is the JSON key to pick.
func Refs(lookup LookupFunc, settings []Setting) ([]Ref, error) {
	var refs []Ref
	var errs []string
	for _, s := range settings {
		var found []Ref
		for _, form := range []struct {
			suffix string
			store  Store
		}{{SecretARNSuffix, SecretsManager}, {SSMNameSuffix, ParameterStore}} {
			name := s.Name + form.suffix
			v, ok := lookup(name)
			if v = strings.TrimSpace(v); !ok || v == "" {
				continue
			}
			id, key, hasKey := strings.Cut(v, "#")
			id, key = strings.TrimSpace(id), strings.TrimSpace(key)
			switch {
			case id == "":
				errs = append(errs, fmt.Sprintf("%s: no ARN or name before the '#'", name))
				continue
			case hasKey && key == "":
				errs = append(errs, fmt.Sprintf("%s: nothing after the '#'; write the JSON key to pick after it, as <arn or name>#%s", name, s.Key))
				continue
			}
			found = append(found, Ref{Setting: s, Variable: name, Store: form.store, ID: id, Key: key})
		}
		if len(found) == 0 {
			continue
		}
		if v, ok := lookup(s.Name); ok && strings.TrimSpace(v) != "" {
			// The plain value is never repeated: it is the secret itself.
			errs = append(errs, fmt.Sprintf("%s: %s is set too; keep the value in one place only and unset %s", found[0].Variable, s.Name, s.Name))
			continue
		}
		if len(found) > 1 {
			errs = append(errs, fmt.Sprintf("%s, %s: both say where %s is kept; set only one of them", found[0].Variable, found[1].Variable, s.Name))
			continue
		}
		refs = append(refs, found[0])
	}
	if len(errs) > 0 {
		return nil, newError(errs)
	}
	return refs, nil
}

// Error lists what went wrong, sorted; each problem starts with the name of
// the variable at fault, and none holds a secret's value.
type Error struct {
	Problems []string
}

func (e *Error) Error() string { return strings.Join(e.Problems, "; ") }

func newError(problems []string) *Error {
	slices.Sort(problems)
	return &Error{Problems: problems}
}
