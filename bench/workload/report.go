package workload

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable writes results as an aligned text table.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tengine\tbackend\tworkers\tconc\tn\truns\tinstances/s\tactivities/s\tsteps/s\tp50 ms\tp99 ms\tpeak RSS\tworker RSS\tstore\t")
	for _, r := range results {
		conc := "default"
		if r.Concurrency > 0 {
			conc = fmt.Sprint(r.Concurrency)
		}
		if !r.OK() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\tFAILED: %s\t\t\t\t\t\t\t\n",
				r.Workload, r.Engine, r.Backend, r.Workers, conc, r.N, r.Runs, oneLine(r.Error))
			continue
		}
		steps := "-"
		if r.Steps > 0 {
			steps = fmt.Sprintf("%.0f", r.StepsPerSec)
		}
		wrss := "-"
		if len(r.WorkerPeakRSSBytes) > 0 {
			wrss = Bytes(r.MaxWorkerRSS())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\t%.1f\t%.1f\t%s\t%.1f\t%.1f\t%s\t%s\t%s\n",
			r.Workload, r.Engine, r.Backend, r.Workers, conc, r.N, r.Runs, r.InstancesPerSec, r.ActivitiesPerSec, steps,
			r.P50Ms, r.P99Ms, Bytes(r.PeakRSSBytes), wrss, Bytes(r.StoreBytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if c := r.Chain; c != nil && r.OK() {
			fmt.Fprintf(w, "\nchain of %d steps on %s: %.2f ms/step; first 10%%: %.2f ms/step, last 10%%: %.2f ms/step (last/first %.2f)\n",
				c.Steps, r.Backend, c.MsPerStep, c.FirstMsPerStep, c.LastMsPerStep, c.LastOverFirst)
		}
	}
	return nil
}

// Bytes formats a byte count in MiB (KiB below one MiB).
func Bytes(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
