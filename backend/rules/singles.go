package rules

import (
	"context"
	"errors"

	"github.com/durohq/duro/backend"
)

// Batcher is what Singles builds on: the batch claims and the step commit
// that claims.
type Batcher interface {
	backend.BatchClaimer
	backend.StepActivityClaimer
}

// Singles gives a SQL backend the single-item methods of backend.Backend
// (ClaimActivity, ClaimOrchestrationStep, CompleteOrchestrationStep) on
// top of its batch forms, which carry the rules; a backend embeds it,
// pointing B at itself.
type Singles struct {
	B Batcher
	// StepsOf claims up to max orchestration steps of instance only (all
	// instances when only is ""), as ClaimOrchestrationSteps does; op names
	// the operation in errors.
	StepsOf func(ctx context.Context, op string, p *backend.ClaimParams, max int, only string) ([]*backend.OrchestrationWorkItem, error)
	// Fail wraps an error of op as the backend's errors are wrapped.
	Fail func(op string, err error) error
}

// ClaimActivity implements backend.Backend: ClaimActivities with max 1.
func (s Singles) ClaimActivity(ctx context.Context, p *backend.ClaimParams) (*backend.ActivityWorkItem, error) {
	return First(s.B.ClaimActivities(ctx, p, 1))
}

// ClaimOrchestrationStep implements backend.Backend:
// ClaimOrchestrationSteps with max 1.
func (s Singles) ClaimOrchestrationStep(ctx context.Context, p *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	return First(s.B.ClaimOrchestrationSteps(ctx, p, 1))
}

// CompleteOrchestrationStep implements backend.Backend:
// CompleteOrchestrationStepClaim claiming nothing.
func (s Singles) CompleteOrchestrationStep(ctx context.Context, p *backend.CompleteOrchestrationStepParams) error {
	_, err := s.B.CompleteOrchestrationStepClaim(ctx, p, nil, 0)
	return err
}

// ClaimInstanceStep implements backend.InstanceClaimer: StepsOf of the one
// instance, with max 1.
func (s Singles) ClaimInstanceStep(ctx context.Context, instanceID string, p *backend.ClaimParams) (*backend.OrchestrationWorkItem, error) {
	const op = "claim instance step"
	if instanceID == "" {
		return nil, s.Fail(op, errors.New("empty instance ID"))
	}
	return First(s.StepsOf(ctx, op, p, 1, instanceID))
}

// Rows is what ScanProcessed reads: the result rows of either SQL driver.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// ScanProcessed reads request-window rows of (id, added_at in Unix ns).
// The caller closes rows.
func ScanProcessed(rows Rows) ([]backend.ProcessedRequest, error) {
	var out []backend.ProcessedRequest
	for rows.Next() {
		var r backend.ProcessedRequest
		var at int64
		if err := rows.Scan(&r.ID, &at); err != nil {
			return nil, err
		}
		r.At = FromNanos(at)
		out = append(out, r)
	}
	return out, rows.Err()
}
