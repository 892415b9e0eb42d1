package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
	"github.com/durohq/duro/server"
)

// runRemoteDemo is 'duro demo --server URL': the demo's orders, started and
// followed through the API of a 'duro server --demo', whose worker runs
// them. It stops at the second part's decision, which is yours to make on
// the dashboard.
func (a *app) runRemoteDemo(cmd *cobra.Command) error {
	ctx := cmd.Context()
	c, err := a.remote(cmd)
	if err != nil {
		return err
	}
	base := strings.TrimRight(a.server, "/")
	var info server.Info
	if err := c.call(ctx, http.MethodGet, "/api/v1/info", nil, nil, &info); err != nil {
		return err
	}
	if info.Workers != "demo" {
		return fmt.Errorf("the server at %s runs no demo worker: start it with 'duro server --demo' (on a store of its own)", c.base.Redacted())
	}
	out := &demoPrinter{w: a.stdout, start: time.Now()}
	out.printf("duro demo through the server at %s: its worker runs the orders.\n\n", c.base.Redacted())

	id, err := c.Start(ctx, demoOrchestration, demoOrder1001, duro.StartOptions{InstanceID: demoInstanceID, ReplaceFinished: true})
	if err != nil {
		return explain(ctx, c, demoInstanceID, err)
	}
	out.line("client", "started %s instance %s", demoOrchestration, id)
	inst, err := followRemote(ctx, c, id, out, func(i *duro.Instance, custom string) (bool, error) {
		if custom == stepShipping {
			data := demoShipment{Carrier: "DHL", Tracking: "JD014600006281"}
			if err := c.RaiseEvent(ctx, id, demoShippedEvent, data); err != nil {
				return false, explain(ctx, c, id, err)
			}
			out.line("client", "raised event %q {carrier: %s, tracking: %s}", demoShippedEvent, data.Carrier, data.Tracking)
		}
		return i.Status.IsTerminal(), nil
	})
	if err != nil {
		return err
	}
	if inst.Status != duro.StatusCompleted {
		return fmt.Errorf("demo instance %s %s: %s", inst.ID, inst.Status, failureText(inst.Failure))
	}
	out.printf("\n%s %s in %s: output %s\n", inst.ID, inst.Status, shortDuration(inst.CompletedAt.Sub(inst.CreatedAt)), payloadText(inst.RawOutput))

	out.printf("\nPart 2: a payment that must not be made twice. %s is AtMostOnce, with the\n", demoChargeCard)
	out.printf("OnDuplicateSuspend policy; the server's worker is stopped in the middle of it.\n\n")
	id, err = c.Start(ctx, demoPayOrch, demoOrder1002, duro.StartOptions{InstanceID: demoPayInstanceID, ReplaceFinished: true})
	if err != nil {
		return explain(ctx, c, demoPayInstanceID, err)
	}
	out.line("client", "started %s instance %s", demoPayOrch, id)
	inst, err = followRemote(ctx, c, id, out, func(i *duro.Instance, _ string) (bool, error) {
		return i.Status.IsTerminal() || i.Status == duro.StatusSuspended && i.Suspension != nil && len(i.Suspension.Pending) > 0, nil
	})
	if err != nil {
		return err
	}
	if inst.Status != duro.StatusSuspended {
		return fmt.Errorf("demo instance %s %s, want Suspended for a decision", id, inst.Status)
	}
	tasks, err := c.PendingDecisions(ctx)
	if err != nil {
		return err
	}
	var mine []*duro.PendingTask
	for _, t := range tasks {
		if t.InstanceID == id {
			mine = append(mine, t)
		}
	}
	store := " --server " + quoteArg(base)
	var b strings.Builder
	if err := renderDecisions(&b, mine, store); err != nil {
		return err
	}
	out.printf("\nWhat waits for a decision (duro decisions%s):\n%s\n", store, indentText(b.String(), "  "))
	out.printf("It is your decision now. Open the dashboard's Decisions page:\n\n  %s/#/decisions\n\n", base)
	out.printf("and press Retry (ChargeCard runs again, as attempt %d), Supply result (say \"PAY-%s\",\n", mine[0].Attempt+1, id)
	out.printf("if the provider has the charge) or Fail. Then watch %s complete on its page:\n\n  %s/#/instances/%s\n", id, base, id)
	return nil
}

// followRemote prints an instance's status and custom status changes until
// step says it is done. step is called on every look, with the custom
// status when it changed ("" otherwise).
func followRemote(ctx context.Context, c instanceAPI, id string, out *demoPrinter,
	step func(*duro.Instance, string) (bool, error)) (*duro.Instance, error) {
	var status duro.Status
	var custom string
	tick := time.NewTicker(demoPoll)
	defer tick.Stop()
	for {
		inst, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if inst.Status != status {
			status = inst.Status
			out.line("client", "status %s", status)
		}
		changed := ""
		var s string
		if json.Unmarshal(inst.RawCustomStatus, &s) == nil && s != custom {
			custom, changed = s, s
			out.line("client", "custom status %q", s)
		}
		done, err := step(inst, changed)
		if err != nil || done {
			return inst, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("demo: waiting for %s: %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}
