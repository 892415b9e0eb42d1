package backend

import (
	"errors"
	"fmt"
)

// The Validate methods check the params every backend receives, with errors
// that say what is wrong; backends call them first so that all of them
// reject the same malformed input the same way.

// Validate checks the claim params a backend was given.
func (p *ClaimParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.LeaseDuration <= 0:
		return fmt.Errorf("lease duration %v: must be positive", p.LeaseDuration)
	}
	return nil
}

// Validate checks a step's effects before a backend commits them: IDs, status,
// and every task, message, child and rewind they carry.
func (p *CompleteOrchestrationStepParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.InstanceID == "":
		return errors.New("empty instance ID")
	case p.ExecutionID == "":
		return fmt.Errorf("instance %q: empty execution ID", p.InstanceID)
	case !p.Status.Valid():
		return fmt.Errorf("instance %q: unknown status %q", p.InstanceID, p.Status)
	case p.ContinueAsNew != nil && p.ContinueAsNew.NewExecutionID == "":
		return fmt.Errorf("instance %q: continue-as-new with empty execution ID", p.InstanceID)
	}
	for _, a := range p.ActivityTasks {
		switch {
		case a == nil:
			return fmt.Errorf("instance %q: nil activity task", p.InstanceID)
		case a.ID == "" || a.InstanceID == "" || a.Name == "":
			return fmt.Errorf("instance %q: activity task %q: empty ID, instance ID or name", p.InstanceID, a.ID)
		case a.PriorAttempts < 0:
			return fmt.Errorf("instance %q: activity task %q: negative PriorAttempts %d", p.InstanceID, a.ID, a.PriorAttempts)
		}
	}
	for _, m := range p.Messages {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("instance %q: %w", p.InstanceID, err)
		}
	}
	for _, c := range p.StartInstances {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("instance %q: start instance: %w", p.InstanceID, err)
		}
	}
	for _, c := range p.RewindInstances {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("instance %q: rewind instance: %w", p.InstanceID, err)
		}
	}
	if w := p.Window; w != nil {
		if w.Keep < 0 {
			return fmt.Errorf("instance %q: window: negative Keep %d", p.InstanceID, w.Keep)
		}
		for _, r := range w.Add {
			if r.ID == "" {
				return fmt.Errorf("instance %q: window: empty request ID", p.InstanceID)
			}
		}
	}
	return nil
}

// Validate checks a rewind of a child.
func (c *RewindChild) Validate() error {
	switch {
	case c == nil:
		return errors.New("nil rewind child")
	case c.InstanceID == "":
		return errors.New("empty child instance ID")
	case c.MessageID == "":
		return fmt.Errorf("child %q: empty message ID", c.InstanceID)
	case c.FailMessageID == "":
		return fmt.Errorf("child %q: empty fail message ID", c.InstanceID)
	case c.Parent == nil || c.Parent.InstanceID == "":
		return fmt.Errorf("child %q: missing parent", c.InstanceID)
	}
	return nil
}

// Validate checks lease renewal params.
func (p *RenewLeaseParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.ID == "":
		return errors.New("empty ID")
	case p.LeaseDuration <= 0:
		return fmt.Errorf("lease duration %v: must be positive", p.LeaseDuration)
	}
	return nil
}

// Validate checks abandonment params.
func (p *AbandonParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.ID == "":
		return errors.New("empty ID")
	case p.RetryAfter < 0:
		return fmt.Errorf("retry after %v: must not be negative", p.RetryAfter)
	}
	return nil
}

// Validate checks the params of an activity's completion.
func (p *CompleteActivityParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.TaskID == "":
		return errors.New("empty task ID")
	case p.Result == nil:
		return fmt.Errorf("activity task %q: nil result", p.TaskID)
	}
	return nil
}

// Validate checks rewind params.
func (p *RewindParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.InstanceID == "":
		return errors.New("empty instance ID")
	case p.MessageID == "":
		return fmt.Errorf("instance %q: empty message ID", p.InstanceID)
	}
	return nil
}

// Validate checks start-mark params.
func (p *StartParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.ID == "":
		return errors.New("empty ID")
	case p.Attempt < 1:
		return fmt.Errorf("attempt %d: must be positive", p.Attempt)
	}
	return nil
}

// Validate checks that a message has an ID, an instance and an event.
func (m *Message) Validate() error {
	switch {
	case m == nil:
		return errors.New("nil message")
	case m.ID == "":
		return errors.New("message: empty ID")
	case m.InstanceID == "":
		return fmt.Errorf("message %q: empty instance ID", m.ID)
	case m.Event == nil:
		return fmt.Errorf("message %q: nil event", m.ID)
	}
	return nil
}

// Validate checks instance creation params.
func (p *CreateInstanceParams) Validate() error {
	switch {
	case p == nil:
		return errors.New("nil params")
	case p.ID == "":
		return errors.New("empty instance ID")
	case p.Name == "":
		return fmt.Errorf("instance %q: empty name", p.ID)
	case p.ExecutionID == "":
		return fmt.Errorf("instance %q: empty execution ID", p.ID)
	case p.IfExists != IfExistsFail && p.IfExists != IfExistsReplaceFinished:
		return fmt.Errorf("instance %q: unknown IfExists policy %d", p.ID, p.IfExists)
	case p.Parent != nil && p.Parent.InstanceID == "":
		return fmt.Errorf("instance %q: parent with empty instance ID", p.ID)
	}
	return nil
}
