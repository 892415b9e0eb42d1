package backend

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidPageToken is wrapped by ListInstances for a page token it did
// not produce.
var ErrInvalidPageToken = errors.New("invalid page token")

const pageTokenPrefix = "v1:"

// EncodePageToken returns the opaque token that continues a newest-first
// listing after the instance created at createdAt with the given ID.
// Backends that page by (created time, ID) share it.
func EncodePageToken(createdAt time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + strconv.FormatInt(createdAt.UnixNano(), 10) + ":" + id))
}

// DecodePageToken reads a token made by EncodePageToken, returning the
// creation time in Unix nanoseconds and the ID, or an error wrapping
// ErrInvalidPageToken.
func DecodePageToken(tok string) (int64, string, error) {
	bad := fmt.Errorf("%w %q", ErrInvalidPageToken, tok)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, "", bad
	}
	rest, ok := strings.CutPrefix(string(raw), pageTokenPrefix)
	if !ok {
		return 0, "", bad
	}
	num, id, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, "", bad
	}
	at, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, "", bad
	}
	return at, id, nil
}
