package ircconn

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/text/secure/precis"
)

// ErrUnknownCasemapping is returned by Casefold when the server advertises a
// CASEMAPPING this package does not implement.
var ErrUnknownCasemapping = errors.New("ircconn: unknown casemapping")

// Casefold folds s according to the named IRC casemapping (rfc1459, rfc1459-strict,
// ascii, rfc7613), for comparing nicks and channel names the way the server does. An
// empty mapping means the RFC 1459 default.
func Casefold(mapping, s string) (string, error) { return casefold(mapping, s) }

func casefold(mapping, s string) (string, error) {
	switch strings.ToLower(mapping) {
	case "", "rfc1459":
		return foldASCII(s, true, true), nil
	case "rfc1459-strict", "strict-rfc1459":
		return foldASCII(s, true, false), nil
	case "ascii":
		return foldASCII(s, false, false), nil
	case "rfc7613", "precis":
		folded, err := precis.UsernameCaseMapped.CompareKey(s)
		if err != nil {
			return "", fmt.Errorf("ircconn: casefolding %q with %s: %w", s, mapping, err)
		}
		return folded, nil
	default:
		return "", fmt.Errorf("%w %q", ErrUnknownCasemapping, mapping)
	}
}

// foldASCII lowercases A-Z and, for the RFC 1459 mappings, []\ (and ^ unless
// strict) to {}| (and ~). Non-ASCII bytes, including invalid UTF-8, are kept.
func foldASCII(s string, rfc1459, caret bool) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		f := c
		switch {
		case 'A' <= c && c <= 'Z':
			f = c + ('a' - 'A')
		case rfc1459 && (c == '[' || c == ']' || c == '\\'):
			f = c + ('{' - '[')
		case caret && c == '^':
			f = '~'
		}
		if f != c {
			if b == nil {
				b = []byte(s)
			}
			b[i] = f
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}
