package bridge

// Errors the core tells apart: user errors are shown as written and never retried;
// permanent ones are given up at once; the rest (the homeserver away) are retried.

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/passerelle/passerelle/bridge/queue"
	"maunium.net/go/mautrix"
)

// userError is a failure whose text is shown to the Matrix user as is.
type userError struct{ msg string }

func (e *userError) Error() string { return e.msg }

func (e *userError) Unwrap() error { return errPermanent }

func userErrorf(format string, args ...any) error {
	return &userError{msg: fmt.Sprintf(format, args...)}
}

// isRetryable says whether an error from the homeserver is worth retrying.
func isRetryable(err error) bool {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) {
		if httpErr.Response != nil {
			code := httpErr.Response.StatusCode
			return code >= 500 || code == http.StatusTooManyRequests
		}
		return true
	}
	return !errors.Is(err, errPermanent)
}

// isHomeserverOutage says whether an error means the homeserver could not be reached
// (no response at all, or a gateway in front of it answering for it): the queue waits
// such outages out instead of counting them against the event.
func isHomeserverOutage(err error) bool {
	var httpErr mautrix.HTTPError
	if !errors.As(err, &httpErr) || errors.Is(err, context.Canceled) {
		return false
	}
	if httpErr.Response == nil {
		return httpErr.WrappedError != nil
	}
	switch httpErr.Response.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// errPermanent marks failures that retrying cannot fix (the queue gives them up).
var errPermanent = queue.ErrPermanent
