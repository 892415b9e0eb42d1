package workload

import (
	"context"
	"fmt"

	"github.com/durohq/duro"
)

// Duro is the Engine of duro: a client on the store the workers poll.
type Duro struct {
	Client *duro.Client
}

var _ Engine = (*Duro)(nil)

// Start implements Engine.
func (d *Duro) Start(ctx context.Context, name, id string, input any) error {
	_, err := d.Client.Start(ctx, name, input, duro.StartOptions{InstanceID: id})
	return err
}

// RaiseEvent implements Engine.
func (d *Duro) RaiseEvent(ctx context.Context, id, name string, data any) error {
	return d.Client.RaiseEvent(ctx, id, name, data)
}

// Finished implements Engine: no instance is Pending or Running.
func (d *Duro) Finished(ctx context.Context) (bool, error) {
	page, err := d.Client.List(ctx, duro.ListOptions{
		Statuses: []duro.Status{duro.StatusPending, duro.StatusRunning}, PageSize: 1,
	})
	if err != nil {
		return false, err
	}
	return len(page.Instances) == 0, nil
}

// Outcomes implements Engine: it lists every instance of the store.
func (d *Duro) Outcomes(ctx context.Context) (map[string]Outcome, error) {
	out := map[string]Outcome{}
	token := ""
	for {
		page, err := d.Client.List(ctx, duro.ListOptions{PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		for _, in := range page.Instances {
			out[in.ID] = Outcome{
				Completed: in.Status == duro.StatusCompleted, Status: string(in.Status), CompletedAt: in.CompletedAt,
			}
		}
		if token = page.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// Err implements Engine.
func (d *Duro) Err() error { return nil }

var _ Waiter = (*Duro)(nil)

// Wait implements Waiter with Client.Wait.
func (d *Duro) Wait(ctx context.Context, id string) error {
	in, err := d.Client.Wait(ctx, id)
	if err != nil {
		return err
	}
	if in.Status != duro.StatusCompleted {
		return fmt.Errorf("instance %s: %s", id, in.Status)
	}
	return nil
}
