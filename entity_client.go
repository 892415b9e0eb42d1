package duro

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/replay"
)

// sendToEntity enqueues a request for an entity, creating the entity (or
// re-creating a removed one) when needed.
func sendToEntity(ctx context.Context, be backend.Backend, m *backend.Message) error {
	for range 3 {
		err := be.EnqueueMessage(ctx, m)
		ifExists := backend.IfExistsFail
		switch {
		case err == nil:
			return nil
		case errors.Is(err, backend.ErrInstanceNotFound):
		case errors.Is(err, backend.ErrInstanceFinished):
			ifExists = backend.IfExistsReplaceFinished
		default:
			return err
		}
		cp := replay.EntityCreation(m.InstanceID)
		cp.IfExists = ifExists
		if err := be.CreateInstance(ctx, cp); err != nil && !errors.Is(err, backend.ErrInstanceExists) {
			return err
		}
	}
	return fmt.Errorf("entity %s keeps disappearing", m.InstanceID)
}

func entityRequest(id EntityID, op string, input []byte, msgID string) *backend.Message {
	return &backend.Message{ID: msgID, InstanceID: id.String(), Event: &backend.Event{
		Type: backend.EventEntityRequest, Name: op, Input: input, Entity: &backend.EntityRequest{}, Timestamp: time.Now().UTC(),
	}}
}

// SignalOptions tune Client.SignalEntity.
type SignalOptions struct {
	// IdempotencyKey is the signal's ID: the entity applies a signal with a
	// given key once (within its dedup window). Default: a random UUID.
	IdempotencyKey string
}

// SignalEntity sends the operation op with input to an entity, creating the
// entity if it does not exist. At most one SignalOptions may be given.
func (c *Client) SignalEntity(ctx context.Context, id EntityID, op string, input any, opts ...SignalOptions) error {
	if err := id.validate(); err != nil {
		return err
	}
	if op == "" {
		return errors.New("duro: signal entity: empty operation name")
	}
	key := uuid.NewString()
	if len(opts) > 0 && opts[0].IdempotencyKey != "" {
		key = opts[0].IdempotencyKey
	}
	b, err := c.p.encode(fmt.Sprintf("input of operation %q of entity %s", op, id), input)
	if err != nil {
		return fmt.Errorf("duro: signal %s: %w", id, err)
	}
	if err := sendToEntity(ctx, c.be, entityRequest(id, op, b, "client/"+key)); err != nil {
		return fmt.Errorf("duro: signal %s: %w", id, err)
	}
	return nil
}

// EntityState is a snapshot of an entity.
type EntityState struct {
	ID EntityID
	// Exists is false for an entity whose state was never set or was deleted.
	Exists bool
	// RawState is the encoded state.
	RawState []byte
	// LockedBy is the orchestration instance holding the entity in a
	// critical section, if any.
	LockedBy string
	// Queued counts requests waiting for the lock.
	Queued int
	// Rejected counts requests the entity refused because
	// WorkerOptions.EntityQueueLimit requests already waited for its lock.
	Rejected int
	// LastModified is when the entity last processed a batch.
	LastModified time.Time
	// Suspension is set while the entity is suspended: poisoned, when its
	// batches kept failing (an entity no worker has registered, say), with
	// its requests kept until it is resumed.
	Suspension *Suspension
	p          payloads
}

// State decodes the entity's state into v.
func (e *EntityState) State(v any) error { return e.p.decode("entity state", e.RawState, v) }

func (c *Client) entityState(bi *backend.Instance) (*EntityState, error) {
	id, err := ParseEntityID(bi.ID)
	if err != nil {
		return nil, err
	}
	env, err := decodeEnvelope(bi.CustomStatus)
	if err != nil {
		return nil, fmt.Errorf("duro: entity %s: %w", id, err)
	}
	st := &EntityState{ID: id, Exists: env.Exists && bi.Status != StatusCompleted, RawState: env.State,
		Queued: len(env.Queue), Rejected: env.Rejected, LastModified: env.Modified, p: c.p}
	if !st.Exists {
		st.RawState = nil
	}
	if env.Lock != nil {
		st.LockedBy = env.Lock.Owner
	}
	if bi.Status == StatusSuspended {
		st.Suspension = bi.Suspension
	}
	return st, nil
}

// GetEntity returns a snapshot of the entity. An entity that was never
// signalled returns ErrInstanceNotFound.
func (c *Client) GetEntity(ctx context.Context, id EntityID) (*EntityState, error) {
	if err := id.validate(); err != nil {
		return nil, err
	}
	bi, err := c.be.GetInstance(ctx, id.String())
	if err != nil {
		return nil, fmt.Errorf("duro: get entity %s: %w", id, err)
	}
	return c.entityState(bi)
}

// EntityQuery filters Client.ListEntities.
type EntityQuery struct {
	// Name limits the listing to one entity name.
	Name string
	// IncludeEmpty lists entities without state too.
	IncludeEmpty bool
	// PageSize bounds the instances read per page (default 100); a page
	// may hold fewer entities.
	PageSize  int
	PageToken string
}

// EntityPage is one page of Client.ListEntities.
type EntityPage struct {
	Entities      []*EntityState
	NextPageToken string
}

// ListEntities lists entities, newest first.
func (c *Client) ListEntities(ctx context.Context, q EntityQuery) (*EntityPage, error) {
	p := &backend.ListInstancesParams{PageSize: q.PageSize, PageToken: q.PageToken}
	if q.Name != "" {
		p.Name = "@" + q.Name
	}
	page, err := c.be.ListInstances(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("duro: list entities: %w", err)
	}
	out := &EntityPage{NextPageToken: page.NextPageToken}
	for _, bi := range page.Instances {
		if !strings.HasPrefix(bi.ID, "@") || replay.EntityName(bi.ID) == "" {
			continue
		}
		st, err := c.entityState(bi)
		if err != nil {
			return nil, err
		}
		if st.Exists || q.IncludeEmpty {
			out.Entities = append(out.Entities, st)
		}
	}
	return out, nil
}

// cleanOperation asks an entity to remove itself if it is empty.
const cleanOperation = "@clean"

// CleanEntities removes empty entities: those without state, lock or
// waiting requests whose window of processed request IDs has expired (no
// request for WorkerOptions.EntityDedupAge). Each run purges the entities a
// previous run found removable and asks the others that look empty to
// remove themselves. It returns how many entities it purged and asked.
func (c *Client) CleanEntities(ctx context.Context) (purged, asked int, err error) {
	token := ""
	for {
		page, err := c.be.ListInstances(ctx, &backend.ListInstancesParams{PageSize: 500, PageToken: token})
		if err != nil {
			return purged, asked, fmt.Errorf("duro: clean entities: %w", err)
		}
		for _, bi := range page.Instances {
			if replay.EntityName(bi.ID) == "" {
				continue
			}
			switch {
			case bi.Status == StatusCompleted:
				if err := c.be.PurgeInstance(ctx, bi.ID); err != nil && !errors.Is(err, ErrInstanceNotFound) {
					return purged, asked, fmt.Errorf("duro: clean entities: %w", err)
				}
				purged++
			case !bi.Status.IsTerminal():
				st, err := c.entityState(bi)
				if err != nil || st.Exists || st.LockedBy != "" || st.Queued > 0 {
					continue
				}
				id, _ := ParseEntityID(bi.ID)
				if err := sendToEntity(ctx, c.be, entityRequest(id, cleanOperation, nil, "clean/"+uuid.NewString())); err != nil {
					return purged, asked, fmt.Errorf("duro: clean entities: %w", err)
				}
				asked++
			}
		}
		if token = page.NextPageToken; token == "" {
			return purged, asked, nil
		}
	}
}
