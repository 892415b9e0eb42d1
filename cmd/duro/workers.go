package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/durohq/duro"
	"github.com/durohq/duro/server"
)

func (a *app) workersCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "workers",
		Short: "List the workers running against the store, live and recently gone",
		Long: `Workers lists the workers that recorded a heartbeat in the store, newest
heartbeat first: each one's name (the lease owner its claims record), state,
host and process, the build of the program that runs it, its busy slots
(orchestration steps and activities running, of how many), when it was
last seen, and what it registers.

A worker records a heartbeat every WorkerOptions.HeartbeatInterval (10s by
default). It is live until three intervals after its last heartbeat;
stopping from the moment Stop is called until its in-flight work has
finished; gone once it has stopped (or its heartbeats ended: it was
killed, or lost the store). Workers stay listed for an hour after their
last heartbeat. -o json prints the same as the API's GET /api/v1/workers.`,
		Example: `  duro workers
  duro workers -o json | jq -r '.workers[] | select(.live) | .name'`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := parseOutput(output)
			if err != nil {
				return err
			}
			c, closeStore, err := a.client(cmd, storeRead)
			if err != nil {
				return err
			}
			defer closeStore()
			l, err := c.Workers(cmd.Context())
			if errors.Is(err, errors.ErrUnsupported) {
				return fmt.Errorf("this store keeps no worker heartbeats")
			}
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, server.NewWorkerList(l))
			}
			return renderWorkers(a.stdout, l)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// workerState names where a worker is: live, stopping, gone (stopped), or
// silent (its heartbeats ended without a stop: killed, or cut off).
func workerState(w *duro.WorkerInfo, now time.Time) string {
	switch {
	case !w.GoneAt.IsZero():
		return "gone"
	case !w.Live(now):
		return "silent"
	case w.Stopping:
		return "stopping"
	}
	return "live"
}

func renderWorkers(out io.Writer, l *duro.WorkerList) error {
	if len(l.Workers) == 0 {
		_, err := fmt.Fprintln(out, "No worker has recorded a heartbeat in the last hour.")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tHOST\tPID\tVERSION\tSTEPS\tACTIVITIES\tLAST SEEN\tREGISTERS")
	live := 0
	for _, w := range l.Workers {
		st := workerState(w, l.Now)
		if st == "live" || st == "stopping" {
			live++
		}
		seen := l.Now.Sub(w.HeartbeatAt).Round(time.Second)
		if seen < 0 {
			seen = 0
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d/%d\t%d/%d\t%s ago\t%s\n", w.Name, st, dash(w.Host), w.PID, dash(w.Version),
			w.OrchestrationBusy, w.OrchestrationSlots, w.ActivityBusy, w.ActivitySlots, seen, registersText(w))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "%d live, %d gone or silent\n", live, len(l.Workers)-live)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// registersText lists what a worker registers on one line.
func registersText(w *duro.WorkerInfo) string {
	var parts []string
	for _, p := range []struct {
		what  string
		names []string
	}{{"orchestrations", w.Orchestrations}, {"activities", w.Activities}, {"entities", w.Entities}} {
		if len(p.names) > 0 {
			parts = append(parts, p.what+": "+strings.Join(p.names, ", "))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}
