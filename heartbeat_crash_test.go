package duro_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durohq/duro"
)

// importProgress is the heartbeat details of the "Import" activity: the next
// item to import.
type importProgress struct {
	Next int `json:"next"`
}

// registerImport registers the "ImportAll" orchestration, which calls the
// "Import" activity once with a number of items. Import resumes from its
// heartbeat details, appends each item it imports to the ledger (outside the
// engine), then records the next item with a heartbeat. With
// DURO_CRASH_AFTER_ITEM=k its first attempt kills the process right after
// the heartbeat that follows item k.
func registerImport(reg *duro.Registry, ledger string) {
	crashAfter := -1
	if s := os.Getenv("DURO_CRASH_AFTER_ITEM"); s != "" {
		var err error
		if crashAfter, err = strconv.Atoi(s); err != nil {
			panic(err)
		}
	}
	appendLedger := func(format string, args ...any) {
		f, err := os.OpenFile(ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(f, format+"\n", args...)
		if err := f.Sync(); err != nil {
			panic(err)
		}
		f.Close()
	}
	duro.RegisterActivity(reg, "Import", func(ctx duro.ActivityContext, items int) (string, error) {
		var p importProgress
		resumed, err := ctx.HeartbeatDetails(&p)
		if err != nil {
			return "", err
		}
		appendLedger("start attempt=%d from=%d resumed=%t previous=%t instance=%s task=%d name=%s",
			ctx.Attempt(), p.Next, resumed, !ctx.PreviousDeliveryAt().IsZero(), ctx.InstanceID(), ctx.TaskID(), ctx.Name())
		from := p.Next
		for i := p.Next; i < items; i++ {
			appendLedger("item=%d attempt=%d", i, ctx.Attempt())
			if err := ctx.Heartbeat(importProgress{Next: i + 1}); err != nil {
				return "", err
			}
			if i == crashAfter && ctx.Attempt() == 1 {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
		return fmt.Sprintf("imported %d items from item %d", items-from, from), nil
	})
	duro.RegisterOrchestration(reg, "ImportAll", func(ctx *duro.OrchestrationContext, items int) (string, error) {
		var out string
		err := ctx.CallActivity("Import", items).Await(&out)
		return out, err
	})
}

// TestCrashHeartbeatResume kills a worker process inside an activity, right
// after a heartbeat recorded its progress; the next delivery, in another
// process, reads the details and resumes there: every item is imported
// exactly once, by the attempt that reached it.
func TestCrashHeartbeatResume(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns worker processes")
	}
	const items, crashAfter = 8, 3
	c := newCrashEnv(t, 60*time.Second, "ImportAll", items, duro.StartOptions{InstanceID: "import-1"})
	c.runKilled(t, fmt.Sprintf("DURO_CRASH_AFTER_ITEM=%d", crashAfter))
	if err := c.worker(t).Run(); err != nil {
		t.Fatalf("second worker: %v", err)
	}
	inst, err := c.client.Get(c.ctx, c.id)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := inst.Output(&out); err != nil || inst.Status != duro.StatusCompleted {
		t.Fatalf("instance %s: %v", inst.Status, err)
	}
	if want := fmt.Sprintf("imported %d items from item %d", items-crashAfter-1, crashAfter+1); out != want {
		t.Fatalf("output %q, want %q", out, want)
	}

	var want []string
	want = append(want, "start attempt=1 from=0 resumed=false previous=false instance=import-1 task=0 name=Import")
	for i := 0; i <= crashAfter; i++ {
		want = append(want, fmt.Sprintf("item=%d attempt=1", i))
	}
	want = append(want, fmt.Sprintf("start attempt=2 from=%d resumed=true previous=true instance=import-1 task=0 name=Import", crashAfter+1))
	for i := crashAfter + 1; i < items; i++ {
		want = append(want, fmt.Sprintf("item=%d attempt=2", i))
	}
	if got := strings.TrimSpace(readFile(c.ledger)); got != strings.Join(want, "\n") {
		t.Fatalf("ledger:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
