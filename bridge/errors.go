package bridge

// Errors the core tells apart: user errors are shown as written and never retried;
// permanent ones are given up at once; the rest (the homeserver away) are retried.

import (
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

// errPermanent marks failures that retrying cannot fix (the queue gives them up).
var errPermanent = queue.ErrPermanent
