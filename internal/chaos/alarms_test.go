package chaos

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.opentelemetry.io/otel/attribute"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/internal/telemetry"
)

// TestHistoryAlarms reads the alarms of a history: a failed possible
// duplicate and a suspension are alarms, with the task ID they were
// scheduled under (the operator's CompleteTask result keeps it); other
// failures and results are not.
func TestHistoryAlarms(t *testing.T) {
	h := []*backend.Event{
		{Type: backend.EventTaskScheduled, TaskID: 0, Name: ActivityCharge},
		{Type: backend.EventTaskFailed, TaskID: 0, Attempt: 2, Failure: &backend.Failure{Type: duro.FailureTypePossibleDuplicate}},
		{Type: backend.EventTaskScheduled, TaskID: 1, Name: ActivityCharge},
		{Type: backend.EventTaskDuplicate, TaskID: 1, Attempt: 3},
		{Type: backend.EventExecutionSuspended},
		{Type: backend.EventExecutionResumed, Decisions: []*backend.Decision{{TaskID: 1}}},
		{Type: backend.EventTaskCompleted, TaskID: 1, Result: []byte(`"resolved-by-operator"`)},
		{Type: backend.EventTaskScheduled, TaskID: 2, Name: ActivityStep},
		{Type: backend.EventTaskFailed, TaskID: 2, Attempt: 1, Failure: &backend.Failure{Type: "Panic"}},
		{Type: backend.EventTaskFailed, TaskID: 3, Attempt: 4, Failure: &backend.Failure{Type: duro.FailureTypePoisoned}},
	}
	got := historyAlarms("i", h)
	want := []Alarm{
		{Instance: "i", Task: 0, Attempt: 2, Source: AlarmFailed},
		{Instance: "i", Task: 1, Attempt: 3, Source: AlarmSuspended},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("alarms = %+v, want %+v", got, want)
	}
}

// TestClassifyAlarms judges alarms against ledger attempts and explains
// the false ones by the earlier deliveries and their processes' fates.
func TestClassifyAlarms(t *testing.T) {
	const (
		alive   = 10 // a process still running
		stopped = 11 // stopped gracefully
		killed  = 12 // SIGKILLed
		point   = 13 // killed itself at a fault point
	)
	fates := map[int]string{stopped: FateSIGTERM, killed: FateSIGKILL, point: fateFaultPre + "step-after-commit"}
	ended := func(pid int, outcome string) delivery { return delivery{PID: pid, Ended: true, Outcome: outcome} }
	open := func(pid int) delivery { return delivery{PID: pid} }
	alarm := func(attempt int) Alarm { return Alarm{Instance: "i", Task: 0, Attempt: attempt, Source: AlarmFailed} }
	for _, tc := range []struct {
		name       string
		ran        []int              // attempts whose code started
		deliveries map[int][]delivery // earlier deliveries seen, by attempt
		alarms     []Alarm
		falseN     int
		cause      string // of the one false alarm, if any
	}{
		{name: "first delivery ran: a true alarm", ran: []int{1},
			deliveries: map[int][]delivery{1: {open(killed)}}, alarms: []Alarm{alarm(2)}},
		{name: "a paused delivery that ran later makes it true", ran: []int{1},
			deliveries: map[int][]delivery{1: {ended(alive, "lease_lost")}}, alarms: []Alarm{alarm(2)}},
		{name: "only the alarm's own attempt ran (reconciled retry): false", ran: []int{2},
			deliveries: map[int][]delivery{1: {ended(alive, "handed_back")}}, alarms: []Alarm{alarm(2)},
			falseN: 1, cause: CauseHandedBack},
		{name: "handed back", deliveries: map[int][]delivery{1: {ended(alive, "handed_back")}},
			alarms: []Alarm{alarm(2)}, falseN: 1, cause: CauseHandedBack},
		{name: "an earlier alarm whose failure was not kept, then a hand-back",
			deliveries: map[int][]delivery{1: {ended(alive, "handed_back")}, 2: {ended(alive, "error")}},
			alarms:     []Alarm{alarm(3)}, falseN: 1, cause: CauseHandedBack},
		{name: "given up by a stopping worker", deliveries: map[int][]delivery{1: {ended(stopped, "handed_back")}},
			alarms: []Alarm{alarm(2)}, falseN: 1, cause: CauseStopped},
		{name: "killed during the delivery", deliveries: map[int][]delivery{1: {open(killed)}},
			alarms: []Alarm{alarm(2)}, falseN: 1, cause: CauseKilledDuring + " (" + FateSIGKILL + ")"},
		{name: "killed at a fault point", deliveries: map[int][]delivery{1: {open(point)}},
			alarms: []Alarm{alarm(2)}, falseN: 1, cause: CauseKilledDuring + " (fault point: step-after-commit)"},
		{name: "never reached a worker's code", deliveries: nil,
			alarms: []Alarm{alarm(2)}, falseN: 1, cause: CauseNeverSeen},
		{name: "lost its lease", deliveries: map[int][]delivery{1: {ended(alive, "lease_lost")}},
			alarms: []Alarm{alarm(2)}, falseN: 1, cause: CauseLeaseLost},
		{name: "a kill outranks a hand-back",
			deliveries: map[int][]delivery{1: {ended(stopped, "handed_back")}, 2: {open(killed)}},
			alarms:     []Alarm{alarm(3)}, falseN: 1, cause: CauseKilledDuring + " (" + FateSIGKILL + ")"},
		{name: "an unseen claim outranks a pause and a stop",
			deliveries: map[int][]delivery{1: {ended(stopped, "handed_back")}, 3: {ended(alive, "lease_lost")}},
			alarms:     []Alarm{alarm(4)}, falseN: 1, cause: CauseNeverSeen},
		{name: "a delivery never ended on a live process",
			deliveries: map[int][]delivery{1: {open(alive)}},
			alarms:     []Alarm{alarm(2)}, falseN: 1, cause: CauseKilledDuring + " (" + FateRunning + ")"},
		{name: "the same alarm seen twice counts once",
			deliveries: map[int][]delivery{1: {ended(alive, "handed_back")}},
			alarms:     []Alarm{alarm(2), {Instance: "i", Task: 0, Attempt: 2, Source: AlarmReconciled}},
			falseN:     1, cause: CauseHandedBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ran := map[taskKey][]int{{"i", 0}: tc.ran}
			deliveries := map[taskKey]map[int][]delivery{{"i", 0}: tc.deliveries}
			st := classifyAlarms(tc.alarms, ran, deliveries, fates)
			if st.PossibleDuplicates != 1 || st.FalseAlarms != tc.falseN {
				t.Fatalf("possible duplicates %d, false alarms %d; want 1, %d (%+v)", st.PossibleDuplicates, st.FalseAlarms, tc.falseN, st)
			}
			if st.AfterCrash+st.AfterHandBack != st.FalseAlarms {
				t.Fatalf("after crash %d + after hand-back %d != false alarms %d", st.AfterCrash, st.AfterHandBack, st.FalseAlarms)
			}
			if tc.falseN == 0 {
				if len(st.Causes) != 0 || len(st.Examples) != 0 {
					t.Fatalf("a true alarm has a cause: %+v", st)
				}
				return
			}
			if st.Causes[tc.cause] != 1 || len(st.Examples) != 1 || st.Examples[0].Cause != tc.cause {
				t.Fatalf("causes %v, examples %+v; want %q", st.Causes, st.Examples, tc.cause)
			}
			wantCrash := tc.cause != CauseHandedBack && tc.cause != CauseStopped
			if (st.AfterCrash == 1) != wantCrash {
				t.Fatalf("after crash %d, after hand-back %d for %q", st.AfterCrash, st.AfterHandBack, tc.cause)
			}
			if st.BySource[tc.alarms[0].Source] != 1 {
				t.Fatalf("by source %v", st.BySource)
			}
		})
	}
}

// TestJudgeAlarms runs the whole judgement on files as a run leaves them:
// a ledger with executions, a fenced-off attempt and reconciler calls, and
// the deliveries files two worker processes wrote through their tracers.
func TestJudgeAlarms(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.db")
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Call a: attempt 1 ran; the alarm at 2 is true.
	must(t, l.Record(ctx, "a", 0, ActivityCharge, 1, policyAMO))
	// Call b: the reconciler at attempt 3 fenced; attempt 2, paused, then
	// tried to record and was refused: its code did start, so the alarm
	// at 3 is true, and b is not counted as executed.
	must(t, l.RecordReconcile(ctx, "b", 0, 3))
	if _, err := l.FenceAndCheck(ctx, "b", 0, 3); err != nil {
		t.Fatal(err)
	}
	if err := l.Record(ctx, "b", 0, ActivityCharge, 2, policyAMO); !errors.Is(err, ErrFenced) {
		t.Fatalf("record behind the fence: %v, want ErrFenced", err)
	}
	// Call c: attempt 1 was handed back by a process (pid 100) that was
	// then stopped; the reconciler at 2 found nothing and ran the code.
	must(t, l.RecordReconcile(ctx, "c", 0, 2))
	must(t, l.Record(ctx, "c", 0, ActivityCharge, 2, policyAMO))
	// Call d: attempt 1 started on pid 200, which was killed.
	writeDeliveries(t, path, 100, []deliveryRecord{{Event: "start", Instance: "c", Task: 0, Attempt: 1},
		{Event: "end", Instance: "c", Task: 0, Attempt: 1, Outcome: "handed_back"}})
	writeDeliveries(t, path, 200, []deliveryRecord{{Event: "start", Instance: "d", Task: 0, Attempt: 1}})
	// A torn last line, as a kill in the middle of a write leaves.
	f, err := os.OpenFile(deliveriesPath(path, 200), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"e":"end","i":"d"`)
	f.Close()

	r := &run{cfg: Config{Ledger: path}, report: &Report{}, fates: map[int]string{100: FateSIGTERM, 200: FateSIGKILL}}
	history := []Alarm{
		{Instance: "a", Task: 0, Attempt: 2, Source: AlarmFailed},
		{Instance: "d", Task: 0, Attempt: 2, Source: AlarmSuspended},
	}
	if err := r.judgeAlarms(ctx, l, history); err != nil {
		t.Fatal(err)
	}
	st := r.report.AlarmStats
	wantCauses := map[string]int{CauseStopped: 1, CauseKilledDuring + " (" + FateSIGKILL + ")": 1}
	if st.PossibleDuplicates != 4 || st.FalseAlarms != 2 || st.AfterHandBack != 1 || st.AfterCrash != 1 || !maps.Equal(st.Causes, wantCauses) {
		t.Fatalf("stats %+v; want 4 alarms, 2 false (%v)", st, wantCauses)
	}
	if want := map[string]int{AlarmFailed: 1, AlarmSuspended: 1, AlarmReconciled: 2}; !maps.Equal(st.BySource, want) {
		t.Fatalf("by source %v, want %v", st.BySource, want)
	}
	ex, err := l.Executions(ctx, policyAMO)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 2 || ex[taskKey{"b", 0}] != 0 {
		t.Fatalf("executions %v: the refused attempt must not count as one", ex)
	}
}

// TestDeliveryTracer records the spans of the named activity only: a
// start line once the delivery is named, an end line with its outcome.
func TestDeliveryTracer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	tr, err := newDeliveryTracer(deliveriesPath(path, 7), ActivityCharge)
	if err != nil {
		t.Fatal(err)
	}
	tracer := tr.Tracer("duro")
	name := func(inst string, attempt int) []attribute.KeyValue {
		return []attribute.KeyValue{telemetry.AttrInstanceID.String(inst), telemetry.AttrTaskID.Int(3), telemetry.AttrAttempt.Int(attempt)}
	}
	_, s := tracer.Start(context.Background(), "activity "+ActivityCharge)
	if !s.IsRecording() {
		t.Fatal("a charge's span does not record: the engine would name nothing on it")
	}
	s.SetAttributes(name("x", 1)...)
	s.SetAttributes(telemetry.AttrOnDuplicate.String("Fail"))
	s.SetAttributes(telemetry.AttrOutcome.String("handed_back"))
	s.End()
	s.End() // a second End writes nothing
	_, s = tracer.Start(context.Background(), "activity "+ActivityCharge)
	s.SetAttributes(name("x", 2)...) // never ends: its process "died"
	_, other := tracer.Start(context.Background(), "activity "+ActivityStep)
	other.SetAttributes(name("y", 1)...)
	other.End()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readDeliveries(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]delivery{1: {{PID: 7, Ended: true, Outcome: "handed_back"}}, 2: {{PID: 7}}}
	if len(got) != 1 || !maps.EqualFunc(got[taskKey{"x", 3}], want, slices.Equal) {
		t.Fatalf("deliveries %+v, want x/3: %+v", got, want)
	}
}

func writeDeliveries(t *testing.T, ledger string, pid int, recs []deliveryRecord) {
	t.Helper()
	tr, err := newDeliveryTracer(deliveriesPath(ledger, pid))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, r := range recs {
		tr.tracer.write(r)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
