package backend

import "strconv"

// TaskMessageID is the deterministic ID of the activity task (and of any other
// outgoing message) produced by task taskID of an execution, per O1.
func TaskMessageID(instanceID, executionID string, taskID int) string {
	return instanceID + "/" + executionID + "/" + strconv.Itoa(taskID)
}

// ResultMessageID is the ID of the inbox message that carries the result of the
// activity task or timer with the given ID.
func ResultMessageID(taskMessageID string) string {
	return taskMessageID + "/result"
}

// StartMessageID is the ID of the ExecutionStarted message of an execution.
func StartMessageID(instanceID, executionID string) string {
	return instanceID + "/" + executionID + "/start"
}
