// Package envtest gives tests an environment of their own: a lookup
// function over KEY=value pairs, in the shape of os.LookupEnv, so that
// settings are read as the extension reads them without touching the
// test process's environment.
package envtest

import "strings"

// Lookup returns a lookup function over pairs written KEY=value; a later
// pair for the same key wins.
func Lookup(pairs ...string) func(name string) (string, bool) {
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, _ := strings.Cut(p, "=")
		m[k] = v
	}
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}
