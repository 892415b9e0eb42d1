package durotest_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/durohq/duro"
	"github.com/durohq/duro/durotest"
)

type chargeReq struct {
	Order  string
	Amount int
}

// OnActivity replaces the registered code and keeps its options: the mock
// runs at most once, and an injected crash suspends the instance as the
// real activity's policy says.
func TestOnActivityKeepsOptions(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	duro.RegisterActivity(env.Registry(), "Charge", func(ctx duro.ActivityContext, r chargeReq) (string, error) {
		t.Error("the real Charge ran")
		return "", nil
	}, duro.ActivityOptions{Guarantee: duro.AtMostOnce, OnDuplicate: duro.OnDuplicateSuspend})
	duro.RegisterOrchestration(env.Registry(), "Pay", func(ctx *duro.OrchestrationContext, r chargeReq) (string, error) {
		var s string
		err := ctx.CallActivity("Charge", r).Await(&s)
		return s, err
	})
	var got []chargeReq
	env.OnActivity("Charge", func(ctx duro.ActivityContext, r chargeReq) (string, error) {
		got = append(got, r)
		return "mocked", nil
	})
	if out := output[string](t, env.Run("Pay", chargeReq{"o1", 5})); out != "mocked" {
		t.Fatalf("output %q", out)
	}
	if len(got) != 1 || got[0] != (chargeReq{"o1", 5}) {
		t.Fatalf("mock called with %v", got)
	}

	env.CrashAfterStart("Charge")
	id := env.Start("Pay", chargeReq{"o2", 7})
	env.WaitSuspended(id)
	env.AssertHistory(t, id, "TaskScheduled #0 Charge guarantee=at-most-once/Suspend", "TaskDuplicate #0 Charge")
	if len(got) != 1 {
		t.Fatalf("the mock ran again after the crash: %v", got)
	}
}

// A mock of an activity nobody registered registers it; a mock's error
// is the activity's failure, retried by the call's policy.
func TestOnActivityUnregistered(t *testing.T) {
	env := durotest.New(t, durotest.WithStartTime(start))
	duro.RegisterOrchestration(env.Registry(), "Lookup", func(ctx *duro.OrchestrationContext, key string) (int, error) {
		var n int
		err := ctx.CallActivity("Fetch", key, duro.CallOptions{RetryPolicy: &duro.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Minute}}).Await(&n)
		return n, err
	})
	var mu sync.Mutex
	calls := 0
	env.OnActivity("Fetch", func(ctx duro.ActivityContext, key string) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			return 0, errors.New("not yet")
		}
		return len(key), nil
	})
	inst := env.Run("Lookup", "abcd")
	if n := output[int](t, inst); n != 4 {
		t.Fatalf("output %d", n)
	}
	env.AssertActivityCalled(t, inst.ID, "Fetch", 3)
}

// A mock of the wrong shape fails the test at once.
func TestOnActivityBadSignature(t *testing.T) {
	for _, fn := range []any{
		func(s string) (string, error) { return s, nil },
		func(ctx duro.ActivityContext, s string) string { return s },
		"not a function",
		nil,
	} {
		msg := failure(t, func(ft *fakeT) {
			env := durotest.New(ft)
			env.OnActivity("X", fn)
		})
		mustContain(t, msg, `OnActivity("X")`, "want func(duro.ActivityContext, I) (O, error)")
	}
}
