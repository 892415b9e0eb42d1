package rules

import "github.com/durohq/duro/backend"

// WorkerColumns are the columns of a worker's heartbeat row, in the order
// of the values an upsert binds (heartbeat_at takes started_at's value on
// an insert).
const WorkerColumns = `id, name, host, pid, version, orchestrations, activities, entities,
	orchestration_slots, orchestration_busy, activity_slots, activity_busy, stopping,
	started_at, heartbeat_at, expires_at, gone_at`

// UpsertWorkerUpdate is the ON CONFLICT clause of a heartbeat's upsert:
// everything but the worker's start time is replaced.
const UpsertWorkerUpdate = `ON CONFLICT (id) DO UPDATE SET name = excluded.name, host = excluded.host, pid = excluded.pid,
	version = excluded.version, orchestrations = excluded.orchestrations,
	activities = excluded.activities, entities = excluded.entities,
	orchestration_slots = excluded.orchestration_slots, orchestration_busy = excluded.orchestration_busy,
	activity_slots = excluded.activity_slots, activity_busy = excluded.activity_busy,
	stopping = excluded.stopping, heartbeat_at = excluded.heartbeat_at,
	expires_at = excluded.expires_at, gone_at = excluded.gone_at`

// HeartbeatTimes are the expiry and the gone time (0: not gone) that a
// heartbeat recorded at now (Unix ns) stores: a worker is live until now
// plus its TTL; one that says it is gone expires at once.
func HeartbeatTimes(now int64, p *backend.UpsertWorkerParams) (expires, gone int64) {
	if p.Gone {
		return now, now
	}
	return now + int64(p.TTL), 0
}
