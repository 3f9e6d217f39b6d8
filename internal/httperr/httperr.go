// Package httperr words the errors of HTTP clients for the extension's log.
package httperr

import (
	"errors"
	"net/url"
)

// Cause returns the cause of a failed request without the *url.Error
// around it: that wrapper repeats the request's URL, and the callers name
// the endpoint themselves, free of any credentials it may hold.
func Cause(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
