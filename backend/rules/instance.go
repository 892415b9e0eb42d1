package rules

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/durohq/duro/backend"
)

// InstanceColumns are the columns of an instance row that ScanInstance
// reads, in its order. Both SQL backends store an instance with these
// names: times as Unix nanoseconds (0 for none), failure, suspension and
// resume outcomes as JSON text (NULL for none), the parent as three
// nullable columns.
const InstanceColumns = `id, name, execution_id, status, input, output, failure, custom_status,
	created_at, updated_at, completed_at, parent_instance_id, parent_execution_id, parent_task_id, suspension,
	resume_outcomes`

// Scanner is one row of either SQL driver (and of the SQLite backend's
// own connection).
type Scanner interface {
	Scan(dest ...any) error
}

// ScanInstance decodes an instance row of InstanceColumns followed by the
// columns extra receives. The nullable columns are scanned into sql.Null*
// values, which database/sql, pgx and the SQLite backend's own connection
// all accept (sql.Scanner).
func ScanInstance(row Scanner, extra ...any) (*backend.Instance, error) {
	scan := func(dest ...any) error { return row.Scan(append(dest, extra...)...) }
	var (
		in                        backend.Instance
		failure, pid, pexec, susp sql.NullString
		resumes                   sql.NullString
		ptask                     sql.NullInt64
		created, updated, compAt  int64
	)
	if err := scan(&in.ID, &in.Name, &in.ExecutionID, &in.Status, &in.Input, &in.Output, &failure,
		&in.CustomStatus, &created, &updated, &compAt, &pid, &pexec, &ptask, &susp, &resumes); err != nil {
		return nil, err
	}
	in.CreatedAt, in.UpdatedAt, in.CompletedAt = FromNanos(created), FromNanos(updated), FromNanos(compAt)
	if failure.Valid {
		in.Failure = new(backend.Failure)
		if err := json.Unmarshal([]byte(failure.String), in.Failure); err != nil {
			return nil, fmt.Errorf("instance %q: failure: %w", in.ID, err)
		}
	}
	if pid.Valid {
		in.Parent = &backend.ParentRef{InstanceID: pid.String, ExecutionID: pexec.String, TaskID: int(ptask.Int64)}
	}
	if resumes.Valid {
		if err := backend.DecodeResumeOutcomes([]byte(resumes.String), &in.ResumeOutcomes); err != nil {
			return nil, fmt.Errorf("instance %q: %w", in.ID, err)
		}
	}
	if in.Status == backend.StatusSuspended {
		if susp.Valid {
			in.Suspension = new(backend.Suspension)
			if err := json.Unmarshal([]byte(susp.String), in.Suspension); err != nil {
				return nil, fmt.Errorf("instance %q: suspension: %w", in.ID, err)
			}
			in.Suspension.InUTC()
		} else {
			// Suspended without a stored suspension (a step that passed
			// none): report one, since the instance is suspended.
			in.Suspension = &backend.Suspension{Since: in.UpdatedAt}
		}
	}
	return &in, nil
}

// Nanos stores a time as Unix nanoseconds; the zero time is 0.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromNanos is the inverse of Nanos, in UTC.
func FromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// ValidStatuses returns an error naming the first status of ss that is
// not a known one.
func ValidStatuses(ss []backend.Status) error {
	for _, s := range ss {
		if !s.Valid() {
			return fmt.Errorf("unknown status %q", s)
		}
	}
	return nil
}

// First returns the first of items, or nil when there is none or err is
// set: a single-item Claim method on top of its batch form.
func First[T any](items []*T, err error) (*T, error) {
	if err != nil || len(items) == 0 {
		return nil, err
	}
	return items[0], nil
}

// ValidateStep checks the params of a step's commit and, when the commit
// also claims activity tasks (max > 0), the claim's.
func ValidateStep(p *backend.CompleteOrchestrationStepParams, claim *backend.ClaimParams, max int) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if max > 0 {
		return claim.Validate()
	}
	return nil
}

// ScanPage reads the rows of a list query (InstanceColumns, then the sizes
// of input, output and custom status when omit is set) into a page of at
// most size instances: the query asks for size+1, and a row beyond size
// means there is a next page, whose token the page gets. The caller closes
// rows.
func ScanPage(rows Rows, omit bool, size int) (*backend.InstancePage, error) {
	page := &backend.InstancePage{Instances: []*backend.Instance{}}
	for rows.Next() {
		var sizes [3]int
		var extra []any
		if omit {
			extra = []any{&sizes[0], &sizes[1], &sizes[2]}
		}
		in, err := ScanInstance(rows, extra...)
		if err != nil {
			return nil, err
		}
		if omit {
			in.Omitted = true
			in.InputSize, in.OutputSize, in.CustomStatusSize = sizes[0], sizes[1], sizes[2]
		}
		page.Instances = append(page.Instances, in)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(page.Instances) > size {
		page.Instances = page.Instances[:size]
		last := page.Instances[size-1]
		page.NextPageToken = backend.EncodePageToken(last.CreatedAt, last.ID)
	}
	return page, nil
}

// TaskOptions returns the stored form (JSON text) of each task's options,
// as both SQL backends write them. Tasks with the options of the task
// before them share its string: a fan-out's thousands of tasks usually
// have one set of options, encoded once.
func TaskOptions(tasks []*backend.ActivityTask) ([]string, error) {
	out := make([]string, len(tasks))
	var last backend.ActivityOptions
	for i, a := range tasks {
		if i > 0 && a.Options == last {
			out[i] = out[i-1]
			continue
		}
		data, err := json.Marshal(a.Options)
		if err != nil {
			return nil, fmt.Errorf("activity task %q: %w", a.ID, err)
		}
		out[i], last = string(data), a.Options
	}
	return out, nil
}
