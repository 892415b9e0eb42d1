package rules

import (
	"context"

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
