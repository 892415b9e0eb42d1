package replay

import (
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/durohq/duro/backend"
)

const (
	kindEntitySignal actionKind = "entity signal"
	kindEntityCall   actionKind = "entity call"
	kindEntityLock   actionKind = "entity lock"
	kindEntityUnlock actionKind = "entity unlock"
)

// EntityName returns the entity name of an entity instance ID ("@name@key"),
// or "" if id is not an entity's.
func EntityName(id string) string {
	if !strings.HasPrefix(id, "@") {
		return ""
	}
	name, _, ok := strings.Cut(id[1:], "@")
	if !ok {
		return ""
	}
	return name
}

// EntityCreation returns the params that create the entity instance id if
// it does not exist (a live one is left alone).
func EntityCreation(id string, now ...any) *backend.CreateInstanceParams {
	return &backend.CreateInstanceParams{
		ID: id, Name: "@" + EntityName(id),
		ExecutionID: uuid.NewSHA1(uuid.NameSpaceOID, []byte("entity/"+id)).String(),
	}
}

func entityActionName(entityID, op string) string { return entityID + ":" + op }

func lockName(ids []string) string { return strings.Join(ids, ",") }

// SignalEntity sends a one-way operation request to an entity, creating the
// entity if needed, as part of this step's commit.
func (c *Context) SignalEntity(entityID, op string, input []byte) {
	a := c.newAction(kindEntitySignal, entityActionName(entityID, op),
		&backend.Event{Type: backend.EventEntitySignaled, InstanceID: entityID, Name: op, Input: input})
	a.message = &backend.Message{
		ID: c.taskMessageID(a.taskID), InstanceID: entityID,
		Event: &backend.Event{Type: backend.EventEntityRequest, Name: op, Input: input,
			Entity: &backend.EntityRequest{Owner: c.instanceID}},
	}
	a.starts = []*backend.CreateInstanceParams{EntityCreation(entityID)}
	a.future.Resolve(nil)
}

// CallEntity sends an operation request to an entity and returns a future
// for its result.
func (c *Context) CallEntity(entityID, op string, input []byte) *Future {
	a := c.newAction(kindEntityCall, entityActionName(entityID, op),
		&backend.Event{Type: backend.EventEntityCalled, InstanceID: entityID, Name: op, Input: input})
	a.message = &backend.Message{
		ID: c.taskMessageID(a.taskID), InstanceID: entityID,
		Event: &backend.Event{Type: backend.EventEntityRequest, Name: op, Input: input,
			Entity: &backend.EntityRequest{Owner: c.instanceID, Caller: c.ref(a.taskID)}},
	}
	a.starts = []*backend.CreateInstanceParams{EntityCreation(entityID)}
	a.pending = true
	return a.future
}

// LockEntities asks for the locks of a critical section: the request visits
// the entities in sorted order, so two orchestrations that lock overlapping
// sets cannot deadlock. The future resolves when every lock is held; it
// returns the sorted, de-duplicated IDs.
func (c *Context) LockEntities(entityIDs []string) (*Future, []string) {
	ids := sortedUnique(entityIDs)
	a := c.newAction(kindEntityLock, lockName(ids),
		&backend.Event{Type: backend.EventEntityLockRequested, Entity: &backend.EntityRequest{Lock: ids}})
	a.message = &backend.Message{
		ID: c.taskMessageID(a.taskID), InstanceID: ids[0],
		Event: &backend.Event{Type: backend.EventEntityRequest,
			Entity: &backend.EntityRequest{Owner: c.instanceID, Caller: c.ref(a.taskID), Lock: ids}},
	}
	for _, id := range ids {
		a.starts = append(a.starts, EntityCreation(id))
	}
	a.pending = true
	c.locks = append(c.locks, a)
	return a.future, ids
}

// UnlockEntities releases the critical section opened by the lock request
// with task ID lockTaskID.
func (c *Context) UnlockEntities(lockTaskID int) {
	var lock *action
	for _, l := range c.locks {
		if l.taskID == lockTaskID {
			lock = l
		}
	}
	if lock == nil || lock.released {
		return
	}
	lock.released = true
	ids := lock.event.Entity.Lock
	a := c.newAction(kindEntityUnlock, lockName(ids), &backend.Event{Type: backend.EventEntityUnlocked,
		Entity: &backend.EntityRequest{Lock: ids, Caller: c.ref(lockTaskID)}})
	a.extra = releaseMessages(c.instanceID, c.ref(lockTaskID), ids, c.taskMessageID(a.taskID))
	a.future.Resolve(nil)
}

// releaseAll releases every critical section the execution still holds or
// has asked for; the engine calls it when the execution ends.
func (c *Context) releaseAll() []*backend.Message {
	var out []*backend.Message
	for _, l := range c.locks {
		if !l.released {
			l.released = true
			out = append(out, releaseMessages(c.instanceID, c.ref(l.taskID), l.event.Entity.Lock,
				c.taskMessageID(l.taskID)+"/release")...)
		}
	}
	return out
}

// releaseMessages releases the critical section of caller in the
// entities ids, or, when only names some, in those.
func releaseMessages(owner string, caller *backend.ParentRef, ids []string, idPrefix string, only ...string) []*backend.Message {
	out := make([]*backend.Message, 0, len(ids))
	for _, id := range ids {
		if len(only) > 0 && !slices.Contains(only, id) {
			continue
		}
		out = append(out, &backend.Message{
			ID: idPrefix + "/" + id, InstanceID: id,
			Event: &backend.Event{Type: backend.EventEntityRequest,
				Entity: &backend.EntityRequest{Owner: owner, Caller: caller, Release: true, Lock: ids}},
		})
	}
	return out
}

func (c *Context) ref(taskID int) *backend.ParentRef {
	return &backend.ParentRef{InstanceID: c.instanceID, ExecutionID: c.executionID, TaskID: taskID}
}

func sortedUnique(ids []string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	n := 0
	for i, id := range out {
		if i == 0 || id != out[n-1] {
			out[n] = id
			n++
		}
	}
	return out[:n]
}

// heldLocks lists, from a history, the lock requests not released, for a
// terminated instance to release. An unlock that names its entity (remote
// code unlocks one entity at a time) releases only that one.
func heldLocks(inst *backend.Instance, history []*backend.Event) []*backend.Message {
	requested := map[int]*backend.Event{}
	unlocked := map[int][]string{}
	var order []int
	for _, ev := range history {
		switch ev.Type {
		case backend.EventEntityLockRequested:
			requested[ev.TaskID] = ev
			order = append(order, ev.TaskID)
		case backend.EventEntityUnlocked:
			if ev.Entity == nil || ev.Entity.Caller == nil {
				break
			}
			if ev.InstanceID == "" {
				delete(requested, ev.Entity.Caller.TaskID)
			} else {
				unlocked[ev.Entity.Caller.TaskID] = append(unlocked[ev.Entity.Caller.TaskID], ev.InstanceID)
			}
		}
	}
	var out []*backend.Message
	for _, id := range order {
		ev, ok := requested[id]
		if !ok || ev.Entity == nil {
			continue
		}
		var held []string
		for _, e := range ev.Entity.Lock {
			if !slices.Contains(unlocked[id], e) {
				held = append(held, e)
			}
		}
		if len(held) == 0 {
			continue
		}
		ref := &backend.ParentRef{InstanceID: inst.ID, ExecutionID: inst.ExecutionID, TaskID: id}
		out = append(out, releaseMessages(inst.ID, ref, ev.Entity.Lock,
			backend.TaskMessageID(inst.ID, inst.ExecutionID, id)+"/release", held...)...)
	}
	return out
}
