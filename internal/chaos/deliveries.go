package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/durohq/duro/internal/telemetry"
)

// A worker process learns of each delivery it runs through the worker's
// public tracing hook (WorkerOptions.Tracer): the engine starts a span per
// activity delivery, names the instance, task and attempt on it, and ends it
// with the delivery's outcome. The delivery recorder writes a line when the
// span starts and one when it ends to a file of the process's own, each with
// one write(2) and no fsync: a SIGKILL loses nothing already written (the
// kernel holds it), so a delivery whose start line has no end line died with
// its process, and an attempt with no line at all never reached the code
// path of any worker (its worker died right after the claim, or the claim's
// reply was lost). The checks use the lines to explain false alarms; nothing
// in them is an invariant.

// deliveryRecord is one line of a deliveries file.
type deliveryRecord struct {
	Event    string `json:"e"` // "start" or "end"
	Instance string `json:"i"`
	Task     int    `json:"t"`
	Attempt  int    `json:"a"`
	Outcome  string `json:"o,omitempty"`
}

// deliveriesPath is the deliveries file of process pid beside the ledger.
func deliveriesPath(ledger string, pid int) string {
	return fmt.Sprintf("%s.deliveries.%d.jsonl", ledger, pid)
}

// deliveryTracer is a trace.TracerProvider that records the deliveries of
// the named activities to a file; every other span is a no-op.
type deliveryTracer struct {
	trace.TracerProvider // the no-op provider, for what is not overridden
	tracer               deliveryTracerT
}

type deliveryTracerT struct {
	trace.Tracer // no-op
	names        map[string]bool
	mu           *sync.Mutex
	f            *os.File
}

// newDeliveryTracer opens (appending) the file at path and returns a tracer
// provider that records there the deliveries of the activities named.
func newDeliveryTracer(path string, activities ...string) (*deliveryTracer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chaos: deliveries file: %w", err)
	}
	names := map[string]bool{}
	for _, n := range activities {
		names["activity "+n] = true
	}
	np := noop.NewTracerProvider()
	return &deliveryTracer{TracerProvider: np,
		tracer: deliveryTracerT{Tracer: np.Tracer(""), names: names, mu: &sync.Mutex{}, f: f}}, nil
}

// Tracer implements trace.TracerProvider.
func (p *deliveryTracer) Tracer(string, ...trace.TracerOption) trace.Tracer { return p.tracer }

// Close closes the deliveries file.
func (p *deliveryTracer) Close() error { return p.tracer.f.Close() }

// Start implements trace.Tracer.
func (t deliveryTracerT) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx, s := t.Tracer.Start(ctx, name, opts...)
	if !t.names[name] {
		return ctx, s
	}
	ds := &deliverySpan{Span: s, t: t}
	return trace.ContextWithSpan(ctx, ds), ds
}

func (t deliveryTracerT) write(r deliveryRecord) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, _ = t.f.Write(append(b, '\n'))
}

// deliverySpan is the span of one activity delivery: it writes its start
// once the engine has named the delivery, and its end with the outcome.
type deliverySpan struct {
	trace.Span // no-op
	t          deliveryTracerT
	mu         sync.Mutex
	rec        deliveryRecord
	started    bool
	ended      bool
}

// IsRecording implements trace.Span: the engine sets attributes only on a
// recording span.
func (s *deliverySpan) IsRecording() bool { return true }

// SetAttributes implements trace.Span.
func (s *deliverySpan) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	named := false
	for _, a := range kv {
		switch a.Key {
		case telemetry.AttrInstanceID:
			s.rec.Instance = a.Value.AsString()
		case telemetry.AttrTaskID:
			s.rec.Task = int(a.Value.AsInt64())
		case telemetry.AttrAttempt:
			s.rec.Attempt, named = int(a.Value.AsInt64()), true
		case telemetry.AttrOutcome:
			s.rec.Outcome = a.Value.AsString()
		}
	}
	if named && !s.started {
		s.started = true
		r := s.rec
		r.Event, r.Outcome = "start", ""
		s.t.write(r)
	}
}

// End implements trace.Span.
func (s *deliverySpan) End(...trace.SpanEndOption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.ended {
		return
	}
	s.ended = true
	r := s.rec
	r.Event = "end"
	s.t.write(r)
}

// delivery is what the deliveries files say of one delivery.
type delivery struct {
	PID     int
	Ended   bool
	Outcome string
}

// readDeliveries reads every deliveries file beside the ledger: per
// (instance, task), per attempt, the deliveries seen (normally one). A
// torn last line (a process killed in the middle of a write) is skipped.
func readDeliveries(ledger string) (map[taskKey]map[int][]delivery, error) {
	files, err := filepath.Glob(ledger + ".deliveries.*.jsonl")
	if err != nil {
		return nil, err
	}
	out := map[taskKey]map[int][]delivery{}
	for _, path := range files {
		pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(path, ledger+".deliveries."), ".jsonl"))
		if err != nil {
			continue
		}
		if err := readDeliveryFile(path, pid, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readDeliveryFile(path string, pid int, out map[taskKey]map[int][]delivery) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("chaos: read deliveries: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r deliveryRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Instance == "" {
			continue
		}
		k := taskKey{r.Instance, r.Task}
		if out[k] == nil {
			out[k] = map[int][]delivery{}
		}
		ds := out[k][r.Attempt]
		i := -1
		for j := range ds {
			if ds[j].PID == pid && !ds[j].Ended {
				i = j
			}
		}
		switch {
		case r.Event == "start" || i < 0:
			ds = append(ds, delivery{PID: pid, Ended: r.Event == "end", Outcome: r.Outcome})
		default:
			ds[i].Ended, ds[i].Outcome = true, r.Outcome
		}
		out[k][r.Attempt] = ds
	}
	return sc.Err()
}
