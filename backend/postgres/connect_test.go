package postgres_test

import (
	"strings"
	"testing"

	"github.com/durohq/duro/backend/postgres"
)

// TestOpenErrorsOnce: an error of Open says once what went wrong, without
// pgx's repetitions, a "migrate" for a store that was only opened, or
// Options.Schema for a schema the URL named.
func TestOpenErrorsOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url, want string
		notWant         []string
	}{
		{"refused", "postgres://someone:secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=2",
			"postgres: open: cannot connect to 127.0.0.1:1 (user someone, database db): connection refused",
			[]string{"dial", "migrate", "failed to connect", "secret", "postgres: open: postgres:"}},
		{"bad duro_schema", "postgres://someone@127.0.0.1:1/db?duro_schema=Bad-Name",
			`postgres: open: the URL's duro_schema: schema name "Bad-Name": want lower-case letters`,
			[]string{"Options.Schema"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := postgres.Open(t.Context(), tt.url, nil)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Open: %v\nwant %q", err, tt.want)
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("Open: %v has %q", err, w)
				}
			}
		})
	}
}
