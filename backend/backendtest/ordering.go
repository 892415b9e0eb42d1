package backendtest

import (
	"testing"
	"time"

	"github.com/durohq/duro/backend"
)

// orderingTests pin down the order of a step's effects that the engine
// relies on.
func orderingTests() []test {
	return []test{
		{"MessageToInstanceStartedInSameStep", func(t *testing.T, e *env) {
			e.create("p", nil)
			wi := e.claimStep("p", e.at(time.Second))
			e.commit(wi, e.at(time.Second), func(p *backend.CompleteOrchestrationStepParams) {
				p.StartInstances = []*backend.CreateInstanceParams{{ID: "@counter@a", Name: "@counter", ExecutionID: "ce", Now: e.at(time.Second)}}
				p.Messages = []*backend.Message{{ID: "req-1", InstanceID: "@counter@a",
					Event: &backend.Event{Type: backend.EventEntityRequest, Name: "add", Input: []byte("1"), Timestamp: e.at(time.Second)}}}
			})
			child := e.claimStep("@counter@a", e.at(2*time.Second))
			var types []backend.EventType
			for _, m := range child.Messages {
				types = append(types, m.Event.Type)
			}
			if len(types) != 2 || types[1] != backend.EventEntityRequest {
				t.Fatalf("the new instance got %v; a message of the step that started it must be delivered, not dropped", types)
			}
		}},
		{"StartInstancesWithoutParentLeavesLiveInstanceAlone", func(t *testing.T, e *env) {
			e.create("p", nil)
			e.create("@counter@b", nil)
			wi := e.claimStep("p", e.at(time.Second))
			e.commit(wi, e.at(time.Second), func(p *backend.CompleteOrchestrationStepParams) {
				p.StartInstances = []*backend.CreateInstanceParams{{ID: "@counter@b", Name: "@counter", ExecutionID: "other", Now: e.at(time.Second)}}
			})
			if got := e.instance("@counter@b"); got.ExecutionID == "other" {
				t.Fatal("a live instance was replaced")
			}
			b := e.claimStep("@counter@b", e.at(time.Hour))
			e.wantMessages(b, backend.StartMessageID("@counter@b", e.instance("@counter@b").ExecutionID))
			e.commit(b, e.at(time.Hour), nil)
			e.noStep(e.at(time.Hour), "no failure message for an instance without parent")
		}},
	}
}
