// Package testhook is how package durotest reaches the unexported parts
// of the root package it needs: the clock of a Worker and of a Client, the
// replacement of an activity's code in a Registry, and what a Registry
// runs. The root package installs the functions when it is initialised;
// the parameters are typed any because this package cannot import the
// root package (which imports it). Nothing else may use them.
package testhook

import "time"

// ActivityFunc is a replacement activity: actx is the delivery's
// duro.ActivityContext, decode decodes the task's input into a pointer
// with the worker's codec, and the result is encoded like an activity's.
type ActivityFunc func(actx any, decode func(ptr any) error) (any, error)

var (
	// SetWorkerClock sets the clock of a *duro.Worker; call it before the
	// worker starts.
	SetWorkerClock func(worker any, now func() time.Time)
	// SetClientClock sets the clock of a *duro.Client; call it before the
	// client is used.
	SetClientClock func(client any, now func() time.Time)
	// ReplaceActivity replaces the code of activity name in a
	// *duro.Registry, keeping its registered options, or registers fn with
	// the default options if name is not registered.
	ReplaceActivity func(registry any, name string, fn ActivityFunc)
	// Runs reports whether a *duro.Registry has code for orchestration
	// steps (an orchestration or an entity) and for activities: whether a
	// worker's orchestration and activity loops claim at all.
	Runs func(registry any) (steps, activities bool)
)

// AtMostOnce reports whether a *duro.Registry registers activity name
// at most once (a worker then applies that guarantee whatever the call
// recorded).
var AtMostOnce func(registry any, name string) bool
