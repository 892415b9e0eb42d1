package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/durohq/duro/bench/workload"
)

// figure is one compared figure of a workload.
type figure struct {
	name   string
	get    func(*workload.Result) float64
	format func(float64) string
}

func chainFig(get func(*workload.ChainFigures) float64) func(*workload.Result) float64 {
	return func(r *workload.Result) float64 {
		if r.Chain == nil {
			return 0
		}
		return get(r.Chain)
	}
}

var (
	figInstances  = figure{"instances/s", func(r *workload.Result) float64 { return r.InstancesPerSec }, num}
	figActivities = figure{"activities/s", func(r *workload.Result) float64 { return r.ActivitiesPerSec }, num}
	figP50        = figure{"p50 latency ms", func(r *workload.Result) float64 { return r.P50Ms }, num}
	figP99        = figure{"p99 latency ms", func(r *workload.Result) float64 { return r.P99Ms }, num}
	figRSS        = figure{"peak RSS", func(r *workload.Result) float64 { return float64(r.PeakRSSBytes) }, bytesF}
	figStore      = figure{"store size", func(r *workload.Result) float64 { return float64(r.StoreBytes) }, bytesF}
	figElapsed    = figure{"start → complete s", func(r *workload.Result) float64 { return r.ElapsedSeconds }, num2}
	figStep       = figure{"ms/step", chainFig(func(c *workload.ChainFigures) float64 { return c.MsPerStep }), num2}
	figFirst      = figure{"first 10% ms/step", chainFig(func(c *workload.ChainFigures) float64 { return c.FirstMsPerStep }), num2}
	figLast       = figure{"last 10% ms/step", chainFig(func(c *workload.ChainFigures) float64 { return c.LastMsPerStep }), num2}
	figRatio      = figure{"last/first", chainFig(func(c *workload.ChainFigures) float64 { return c.LastOverFirst }), num2}
)

// figuresOf are the figures shown for a workload.
func figuresOf(name string) []figure {
	switch name {
	case workload.FanOut:
		return []figure{figActivities, figElapsed, figRSS, figStore}
	case workload.Chain:
		return []figure{figStep, figFirst, figLast, figRatio, figRSS, figStore}
	case workload.Latency:
		return []figure{figP50, figP99, figInstances, figRSS}
	default:
		return []figure{figInstances, figActivities, figP50, figP99, figRSS, figStore}
	}
}

func num(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func num2(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func bytesF(v float64) string { return workload.Bytes(int64(v)) }

// notes numbers the footnotes of a report.
type notes []string

func (n *notes) mark(s string) string {
	s = strings.TrimSpace(s)
	if i := slices.Index(*n, s); i >= 0 {
		return fmt.Sprintf("[%d]", i+1)
	}
	*n = append(*n, s)
	return fmt.Sprintf("[%d]", len(*n))
}

// cell is an engine's figure in a comparison: the median, and its range
// over the runs when there are several; "FAILED [n]" or "not run [n]"
// otherwise.
func (c *comparison) cell(engine string, f figure, ns *notes) string {
	if why, ok := c.Skipped[engine]; ok {
		return "not run " + ns.mark(engine+": "+why)
	}
	m := c.Medians[engine]
	if m == nil {
		return "not run"
	}
	if !m.OK() {
		return "FAILED " + ns.mark(engine+": "+oneLine(m.Error))
	}
	s := f.format(f.get(m))
	if rs := c.Runs[engine]; len(rs) > 1 {
		lo, hi := f.get(rs[0].Result), f.get(rs[0].Result)
		for _, r := range rs[1:] {
			lo, hi = min(lo, f.get(r.Result)), max(hi, f.get(r.Result))
		}
		if l, h := f.format(lo), f.format(hi); l != h {
			s += " (" + l + "–" + h + ")"
		}
	}
	return s
}

// ratio is duro's median over other's, "-" if either is missing.
func (c *comparison) ratio(other string, f figure) string {
	d, o := c.Medians["duro"], c.Medians[other]
	if d == nil || o == nil || !d.OK() || !o.OK() || f.get(o) <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", f.get(d)/f.get(o))
}

// load is the range of the 1-minute load average over the comparison's
// runs, before and after each.
func (c *comparison) load() string {
	lo, hi, any := 0.0, 0.0, false
	for _, rs := range c.Runs {
		for _, r := range rs {
			for _, v := range []float64{r.LoadBefore, r.LoadAfter} {
				if !any {
					lo, hi, any = v, v, true
				}
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if !any {
		return "-"
	}
	return fmt.Sprintf("%.2f–%.2f", lo, hi)
}

// n is the comparison's N, from any run.
func (c *comparison) n() int {
	for _, m := range c.Medians {
		if m != nil {
			return m.N
		}
	}
	return 0
}

// ratioEngines are the engines duro is compared with.
func (rep *report) ratioEngines() []string {
	var out []string
	if !slices.Contains(rep.Engines, "duro") {
		return nil
	}
	for _, e := range rep.Engines {
		if e != "duro" {
			out = append(out, e)
		}
	}
	return out
}

func (rep *report) header(w io.Writer, prefix string) {
	fmt.Fprintf(w, "%smachine: %s\n", prefix, rep.Machine)
	fmt.Fprintf(w, "%scommand: %s\n", prefix, rep.Command)
	var vs []string
	for _, e := range rep.Engines {
		if v, ok := rep.Versions[e]; ok {
			vs = append(vs, e+" "+v)
		}
	}
	if len(vs) > 0 {
		fmt.Fprintf(w, "%speers:   %s\n", prefix, strings.Join(vs, ", "))
	}
	if slices.Contains(rep.Engines, peerName) {
		orch := "32 on SQLite, 4 on PostgreSQL"
		if rep.PeerOrchestrations > 0 {
			orch = fmt.Sprint(rep.PeerOrchestrations)
		}
		fmt.Fprintf(w, "%s%s: MaxParallelWorkItems %s (orchestrations) and %d (activities), SQLite journal %s + synchronous FULL (duro: WAL + FULL)\n",
			prefix, peerName, orch, rep.PeerActivities, rep.PeerJournal)
	}
	if slices.Contains(rep.Engines, dbosName) {
		how := "child workflows on a queue (DBOS's defaults)"
		if rep.DBOSFanOut == "go" {
			how = "dbos.Go steps in the parent workflow"
		}
		fmt.Fprintf(w, "%sdbos:    own database %s, a schema per run; fan-out as %s\n", prefix, dbosDatabase, how)
	}
	fs := make([]string, len(rep.FsyncPerSec))
	for i, f := range rep.FsyncPerSec {
		fs[i] = fmt.Sprintf("%.0f/s", f)
	}
	fmt.Fprintf(w, "%sfsync:   %s (4 KiB append + fsync; before and after the runs)\n", prefix, strings.Join(fs, ", "))
	fmt.Fprintf(w, "%sfigures: medians of %d alternating runs per engine, (min–max) over the runs; load: 1-minute load average before and after each run\n", prefix, rep.Reps)
}

func writeText(w io.Writer, rep *report) error {
	rep.header(w, "")
	fmt.Fprintln(w)
	others := rep.ratioEngines()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cols := append([]string{"workload", "backend", "n", "load", "figure"}, rep.Engines...)
	for _, o := range others {
		cols = append(cols, "duro/"+o)
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	var ns notes
	for _, c := range rep.Comparisons {
		wl := c.Workload
		if c.Note != "" {
			wl += " " + ns.mark(c.Note)
		}
		if len(c.Medians) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t\t\tnot run\n", wl, c.Backend)
			continue
		}
		for i, f := range figuresOf(c.Workload) {
			row := []string{"", "", "", "", f.name}
			if i == 0 {
				row[0], row[1], row[2], row[3] = wl, c.Backend, fmt.Sprint(c.n()), c.load()
			}
			for _, e := range rep.Engines {
				row = append(row, c.cell(e, f, &ns))
			}
			for _, o := range others {
				row = append(row, c.ratio(o, f))
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ns) > 0 {
		fmt.Fprintln(w)
	}
	for i, n := range ns {
		fmt.Fprintf(w, "[%d] %s\n", i+1, n)
	}
	return nil
}

// writeMarkdown writes the report as Markdown tables, one per workload and
// backend, ready for docs/benchmarks.md.
func writeMarkdown(w io.Writer, rep *report) error {
	rep.header(w, "- ")
	others := rep.ratioEngines()
	var ns notes
	for _, c := range rep.Comparisons {
		title := c.Workload
		if c.Note != "" {
			title += " " + ns.mark(c.Note)
		}
		fmt.Fprintf(w, "\n**%s, %s", title, c.Backend)
		if n := c.n(); n > 0 {
			fmt.Fprintf(w, ", n=%d", n)
		}
		fmt.Fprintf(w, "** (load %s)\n\n", c.load())
		if len(c.Medians) == 0 && len(c.Skipped) == 0 {
			fmt.Fprintln(w, "not run")
			continue
		}
		cols := append([]string{"figure"}, rep.Engines...)
		for _, o := range others {
			cols = append(cols, "duro/"+o)
		}
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
		for _, f := range figuresOf(c.Workload) {
			row := []string{f.name}
			for _, e := range rep.Engines {
				row = append(row, c.cell(e, f, &ns))
			}
			for _, o := range others {
				row = append(row, c.ratio(o, f))
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
		}
	}
	if len(ns) > 0 {
		fmt.Fprintln(w)
	}
	for i, n := range ns {
		fmt.Fprintf(w, "%d. %s\n", i+1, strings.ReplaceAll(n, "|", "\\|"))
	}
	return nil
}
