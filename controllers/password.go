package controllers

import (
	"crypto/rand"
	"fmt"
	"math/big"
)

const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// newPassword returns 32 characters from crypto/rand (about 187 bits). The alphabet needs
// no quoting in a Redis config file or escaping in a URL.
func newPassword() (string, error) {
	out := make([]byte, 32)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range out {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("reading random bytes: %w", err)
		}
		out[i] = passwordAlphabet[n.Int64()]
	}
	return string(out), nil
}

// passwordProblem says why a user-provided password cannot be used, or "".
// The boot scripts write it into a quoted Redis directive and REDIS_URL carries it
// unescaped, so a quote, backslash, space or URL delimiter would break one of them.
func passwordProblem(pw string) string {
	if len(pw) < 8 {
		return "is shorter than 8 characters"
	}
	for _, r := range pw {
		if r <= ' ' || r == '"' || r == '\\' || r == '\'' || r == '@' || r == '/' || r == ':' || r == '%' || r == '#' || r == '?' || r > '~' {
			// Which character is not said: a message or event must not carry any part of a
			// password.
			return "contains a character that cannot be used; use printable ASCII without quotes, backslashes, spaces or any of @/:%#?"
		}
	}
	return ""
}
