package backend

// Recognising a repeated step commit.
//
// A worker that sends CompleteOrchestrationStep and loses the reply (the
// connection broke after COMMIT) sends it again. The instance may have moved
// on meanwhile (its lease is free once the step commits), so the last
// committed attempt is not enough to tell that repeat from a stale
// delivery's completion: backends also keep one bit per recent delivery,
// set when that delivery committed its step, updated by every commit.

// CommittedStepsWindow is how many of an instance's latest step deliveries
// (counted back from the last one that committed) a backend remembers the
// commits of. A repeat that arrives after more deliveries than this is
// rejected with ErrLeaseLost, like a stale one. The bits fit a signed
// 64-bit column with room for the shift of a commit: it is at most 32.
const CommittedStepsWindow = 32

// RepeatsCommittedStep reports whether p is a step that its own delivery
// already committed: the instance's current execution is exec, the last
// delivery that committed a step has attempt completed, and bit i of bits
// is set when delivery completed-i committed. The execution is p's, or the
// one p continued as.
func RepeatsCommittedStep(p *CompleteOrchestrationStepParams, exec string, completed, bits int64) bool {
	if exec != p.ExecutionID && (p.ContinueAsNew == nil || exec != p.ContinueAsNew.NewExecutionID) {
		return false
	}
	d := completed - p.Attempt
	return p.Attempt >= 1 && d >= 0 && d < CommittedStepsWindow && bits>>d&1 == 1
}
