package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/backend/rules"
)

// CreateInstance implements backend.Backend. A creation that may not
// replace an instance (IfExistsFail, what Client.Start does by default)
// sends createQuery with the COMMIT behind it: two round trips (BEGIN with
// the read of the database clock, then the creation and the COMMIT), one
// with p.Now set. The statement writes nothing when a row of the ID
// exists, so the COMMIT commits nothing then, and the instance's status,
// read under its row lock, is the one ErrInstanceExists names. Creations
// that may replace a finished instance go through rules.CreateInstance,
// which must see the status before it replaces.
func (b *Backend) CreateInstance(ctx context.Context, p *backend.CreateInstanceParams) error {
	if p.IfExists == backend.IfExistsReplaceFinished {
		return b.Methods.CreateInstance(ctx, p)
	}
	const op = "create instance"
	if err := p.Validate(); err != nil {
		return b.fail(op, err)
	}
	for try := 0; ; try++ {
		var existing *backend.Status
		var created, delivered bool
		err := b.write(ctx, op, p.Now, func(t *txn) error {
			now, err := rules.CreationTime(t, p)
			if err != nil {
				return err
			}
			start := rules.StartMessage(p, now)
			return t.at(now, func() error {
				args, err := t.createArgs(p, start)
				if err != nil {
					return err
				}
				batch := &pgx.Batch{}
				batch.Queue(t.b.q(createQuery), args...)
				br := t.tx.sendFinal(t.ctx, batch)
				err = br.QueryRow().Scan(&existing, &created, &delivered)
				if cerr := br.Close(); err == nil {
					err = cerr
				}
				if err != nil || !created {
					return err
				}
				return t.delivered(start, true, backend.StatusPending, delivered)
			})
		})
		switch {
		case err != nil:
			return err
		case created && !delivered:
			// The start message's ID was consumed before: no message, so
			// the ready summary the row was created with is recomputed.
			return b.write(ctx, op, time.Time{}, func(t *txn) error { t.touch(p.ID); return nil })
		case created:
			return nil
		case existing != nil:
			return b.fail(op, fmt.Errorf("instance %q (%s): %w", p.ID, *existing, backend.ErrInstanceExists))
		case try+1 == maxCreateTries:
			return b.fail(op, fmt.Errorf("instance %q: created and deleted concurrently %d times", p.ID, maxCreateTries))
		}
		// The statement met a concurrent creation that committed and
		// found no row in its snapshot: run it again, in a new transaction.
	}
}
