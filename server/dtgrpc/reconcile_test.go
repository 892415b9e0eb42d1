package dtgrpc_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/durohq/duro"
	"github.com/durohq/duro/backend"
	"github.com/durohq/duro/server/dtgrpc"
	"github.com/durohq/duro/server/dtgrpc/dtpb"
)

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]dtgrpc.Policy{
		"Charge=AtMostOnce":                      {OnDuplicate: duro.OnDuplicateFail},
		"Charge=AtMostOnce:suspend":              {OnDuplicate: duro.OnDuplicateSuspend},
		"Charge=AtMostOnce:Reconcile:FindCharge": {OnDuplicate: duro.OnDuplicateReconcile, ReconcileActivity: "FindCharge"},
	} {
		name, got, err := dtgrpc.ParsePolicy(in)
		if err != nil || name != "Charge" || got != want {
			t.Errorf("ParsePolicy(%q) = %q %+v %v, want %+v", in, name, got, err, want)
		}
	}
	for _, in := range []string{"Charge=AtMostOnce:Reconcile", "Charge=AtMostOnce:Fail:FindCharge", "Charge=AtLeastOnce", "=AtMostOnce"} {
		if _, _, err := dtgrpc.ParsePolicy(in); err == nil {
			t.Errorf("ParsePolicy(%q) accepted", in)
		}
	}
}

// TestReconcile: a worker dies with an at-most-once delivery whose
// policy is Reconcile; the next delivery asks the SDK to run the reconcile
// activity the tag names, whose answer decides the task: found (its
// result), not found (the code runs once more, in that delivery), a
// failure or a malformed answer (the task fails as ReconciledFailure).
func TestReconcile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		answer *dtpb.ActivityResponse
		// rerun: the task's code is delivered again, and returns this.
		rerun      string
		wantResult string
		wantFail   string
	}{
		{name: "found", answer: &dtpb.ActivityResponse{Result: wrapperspb.String(`{"found":true,"result":{"charge":"ch_1"}}`)},
			wantResult: `{"charge":"ch_1"}`},
		{name: "not found", answer: &dtpb.ActivityResponse{Result: wrapperspb.String(`{"found":false}`)},
			rerun: `{"charge":"ch_2"}`, wantResult: `{"charge":"ch_2"}`},
		{name: "null", answer: &dtpb.ActivityResponse{}, rerun: `"again"`, wantResult: `"again"`},
		{name: "failure", answer: &dtpb.ActivityResponse{FailureDetails: &dtpb.TaskFailureDetails{ErrorType: "Error",
			ErrorMessage: "provider unreachable"}}, wantFail: `reconcile activity "FindCharge" failed: provider unreachable`},
		{name: "malformed", answer: &dtpb.ActivityResponse{Result: wrapperspb.String(`"yes"`)},
			wantFail: `reconcile activity "FindCharge" returned`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, dtgrpc.Options{LeaseDuration: time.Minute})
			c, ctx := b.client, b.ctx
			if _, err := c.StartInstance(ctx, &dtpb.CreateInstanceRequest{InstanceId: "pay", Name: "Pay", Input: wrapperspb.String(`"order-1"`)}); err != nil {
				t.Fatal(err)
			}
			sdk := connect(t, b)
			wi := sdk.next()
			_, err := c.CompleteOrchestratorTask(ctx, &dtpb.OrchestratorResponse{InstanceId: "pay", CompletionToken: wi.CompletionToken,
				Actions: []*dtpb.OrchestratorAction{{Id: 1, OrchestratorActionType: &dtpb.OrchestratorAction_ScheduleTask{
					ScheduleTask: &dtpb.ScheduleTaskAction{Name: "Charge", Input: wrapperspb.String(`"order-1"`), Tags: map[string]string{
						"duro.guarantee": "AtMostOnce", "duro.onDuplicate": "Reconcile", "duro.reconcile": "FindCharge"}}}}}})
			if err != nil {
				t.Fatal(err)
			}
			if a := sdk.next().GetActivityRequest(); a == nil || a.Name != "Charge" || a.Tags["duro.reconcile"] != "FindCharge" {
				t.Fatalf("first delivery: %v", a)
			}
			sdk.close() // it may have charged
			sdk2 := connect(t, b)
			rec := sdk2.next()
			a := rec.GetActivityRequest()
			if a == nil || a.Name != "FindCharge" || a.Tags["duro.reconcileOf"] != "Charge" || a.Tags["duro.attempt"] != "2" ||
				a.GetInput().GetValue() != `"order-1"` || a.TaskId != 1 {
				t.Fatalf("the reconcile request: %v", rec)
			}
			tt.answer.InstanceId, tt.answer.TaskId, tt.answer.CompletionToken = "pay", 1, rec.CompletionToken
			if _, err := c.CompleteActivityTask(ctx, tt.answer); err != nil {
				t.Fatal(err)
			}
			if tt.rerun != "" {
				again := sdk2.next()
				a := again.GetActivityRequest()
				if a == nil || a.Name != "Charge" || a.Tags["duro.attempt"] != "2" {
					t.Fatalf("the run after the reconcile: %v", again)
				}
				if _, err := c.CompleteActivityTask(ctx, &dtpb.ActivityResponse{InstanceId: "pay", TaskId: 1,
					CompletionToken: again.CompletionToken, Result: wrapperspb.String(tt.rerun)}); err != nil {
					t.Fatal(err)
				}
			}
			step := sdk2.next().GetOrchestratorRequest()
			var gotResult, gotFail, gotType string
			for _, ev := range step.GetNewEvents() {
				if tc := ev.GetTaskCompleted(); tc != nil {
					gotResult = tc.GetResult().GetValue()
				}
				if tf := ev.GetTaskFailed(); tf != nil {
					gotFail, gotType = tf.GetFailureDetails().GetErrorMessage(), tf.GetFailureDetails().GetErrorType()
				}
			}
			if tt.wantFail != "" {
				if gotType != duro.FailureTypeReconciled || len(gotFail) < len(tt.wantFail) || gotFail[:len(tt.wantFail)] != tt.wantFail {
					t.Fatalf("failure %q (%s), want %q…", gotFail, gotType, tt.wantFail)
				}
			} else if gotResult != tt.wantResult {
				t.Fatalf("result %q, want %q (step %v)", gotResult, tt.wantResult, step)
			}
			h, err := b.be.GetHistory(ctx, "pay")
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range h {
				if (ev.Type == backend.EventTaskCompleted || ev.Type == backend.EventTaskFailed) && ev.Attempt != 2 {
					t.Fatalf("the outcome is attempt %d's", ev.Attempt)
				}
			}
		})
	}
}
