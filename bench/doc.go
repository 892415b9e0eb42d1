// Package bench holds duro's benchmarks: whole workloads (client, worker,
// replay and backend together) measured with go test -bench. Run
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// Figures are reported per workload as instances/s and activities/s besides
// the usual ns/op and allocations. The machine this runs on is small and
// noisy: compare figures from the same run, never against fixed numbers.
package bench
