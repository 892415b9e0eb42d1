package main

import "context"

// killConnections returns the function chaos uses to kill the workers'
// database connections, or nil for stores without connections to kill.
func killConnections(spec string) func(ctx context.Context) (int, error) {
	return nil
}
