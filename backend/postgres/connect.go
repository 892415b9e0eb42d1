package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// connectError says once where a connection failed and why: pgx's
// message repeats the address and the dial error ("failed to connect to
// `user=u database=d`: h:p (h): dial error: dial tcp h:p: connect:
// connection refused"). Other errors are returned as they are. The
// password is never part of it.
func connectError(err error) error {
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) || ce.Config == nil {
		return err
	}
	where := net.JoinHostPort(ce.Config.Host, strconv.Itoa(int(ce.Config.Port)))
	if ce.Config.Host != "" && ce.Config.Host[0] == '/' {
		where = ce.Config.Host // a Unix socket's directory
	}
	where += fmt.Sprintf(" (user %s, database %s)", ce.Config.User, ce.Config.Database)
	return &connectFailure{msg: "cannot connect to " + where + ": " + connectCause(err), err: err}
}

// connectCause is the innermost reason of a failed connection.
func connectCause(err error) string {
	var pgErr *pgconn.PgError
	var dnsErr *net.DNSError
	var sysErr *os.SyscallError
	var opErr *net.OpError
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	case errors.As(err, &dnsErr):
		return "no such host " + dnsErr.Name
	case errors.As(err, &sysErr):
		return sysErr.Err.Error()
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return "timed out"
	case errors.As(err, &opErr):
		return opErr.Err.Error()
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		err = u
	}
	return err.Error()
}

// connectFailure is a connection error with a message for people.
type connectFailure struct {
	msg string
	err error
}

func (e *connectFailure) Error() string { return e.msg }
func (e *connectFailure) Unwrap() error { return e.err }
