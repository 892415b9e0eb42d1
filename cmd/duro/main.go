// Command duro manages the orchestration instances of a duro store from the
// command line: start instances, inspect their status and history, raise
// events, suspend and resume them (deciding at-most-once tasks that wait for
// an operator), rewind failed ones, terminate and purge them, and run a
// self-contained demo.
//
// Every command works on one store, named by --store (or DURO_STORE); the
// default is the SQLite file duro.db in the current directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed (unknown instance, wrong state, store error)
	exitUsage   = 2 // the command line was wrong (flags, arguments, malformed JSON or times)
)

// defaultStore is the store used when neither --store nor DURO_STORE is set.
const defaultStore = "duro.db"

// defaultTimeout bounds every command unless --timeout says otherwise.
const defaultTimeout = time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, os.Getenv, stdout, stderr)
}

// runEnv is run with the environment supplied by getenv, for tests.
func runEnv(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if a.cancel != nil {
		a.cancel()
	}
	if err == nil {
		return exitOK
	}
	var ue *usageError
	usage := errors.As(err, &ue) || !a.running
	fmt.Fprintf(stderr, "duro: %v\n", describe(err, a.timeout))
	if usage {
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return exitUsage
	}
	return exitFailure
}

// app holds what every command shares: the writers, the environment and the
// global flags.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	store   string
	timeout time.Duration
	// server, token and tokenFile are --server, --token and --token-file:
	// the API the instance commands act through, and its bearer token
	// (which 'duro server' requires of its clients).
	server, token, tokenFile string

	// running is set once cobra has parsed and validated the command line,
	// so errors after it are the command's own, not usage errors.
	running bool
	cancel  context.CancelFunc
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "duro",
		Short: "Manage duro orchestration instances",
		Long: `duro manages the orchestration instances of a duro store: start them, look at
their status and history, raise events to them, suspend and resume them,
decide the tasks that wait for an operator, rewind failed instances,
terminate and purge them.

The store is a SQLite file or a PostgreSQL URL (postgres://…, with an
optional duro_schema=HUB parameter naming the task hub), given by --store or
the DURO_STORE environment variable (default: duro.db in the current
directory). Instances run only
where a duro.Worker with their orchestrations registered polls the same store.
With --server URL (or DURO_SERVER) the commands act through the API of a
'duro server' instead; 'duro server' also serves a web dashboard.

New to duro? Run 'duro demo' to watch an order workflow run end to end.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if a.timeout < 0 {
				return usageErrorf("--timeout must not be negative")
			}
			if a.timeout > 0 && cmd.Annotations[annotationTimeout] != "none" {
				ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
				a.cancel = cancel
				cmd.SetContext(ctx)
			}
			a.running = true
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })

	store := defaultStore
	if s := a.getenv("DURO_STORE"); s != "" {
		store = s
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.store, "store", store, "the store: a SQLite file path or a postgres:// URL (env DURO_STORE)")
	pf.DurationVar(&a.timeout, "timeout", defaultTimeout, "give up after this long, waiting included (0: no limit)")
	pf.StringVar(&a.server, "server", a.getenv("DURO_SERVER"), "act through the API of the duro server at this `URL` instead of opening --store (env DURO_SERVER)")
	pf.StringVar(&a.token, "token", "", "the bearer token of the server's API (env DURO_TOKEN)")
	pf.StringVar(&a.tokenFile, "token-file", "", "read the bearer token from this `FILE`")

	root.AddCommand(
		a.demoCmd(),
		a.startCmd(),
		a.statusCmd(),
		a.listCmd(),
		a.historyCmd(),
		a.raiseCmd(),
		a.suspendCmd(),
		a.resumeCmd(),
		a.decisionsCmd(),
		a.rewindCmd(),
		a.terminateCmd(),
		a.purgeCmd(),
		a.workersCmd(),
		a.entityCmd(),
		a.chaosCmd(),
		a.migrateCmd(),
		a.benchCmd(), a.benchWorkerCmd(),
		a.serverCmd(),
		a.versionCmd(),
	)
	return root
}

// storeGiven reports whether the user chose a store, by flag or environment.
func (a *app) storeGiven(cmd *cobra.Command) bool {
	return cmd.Flags().Changed("store") || a.getenv("DURO_STORE") != ""
}

// usageError marks an error in the command line: it exits with exitUsage.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// describe adds a hint to errors whose cause a user may not guess.
// The SDK's own "duro: " prefix is dropped, as the caller prints one.
func describe(err error, timeout time.Duration) string {
	msg := strings.TrimPrefix(err.Error(), "duro: ")
	if errors.Is(err, context.DeadlineExceeded) && timeout > 0 && !strings.Contains(msg, "--timeout") {
		msg = fmt.Sprintf("%s (gave up after --timeout %v)", msg, timeout)
	}
	return msg
}

// exactArgs is cobra.ExactArgs with a message naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(names) == 0 {
			return usageErrorf("unexpected argument %q: this command takes flags only", args[0])
		}
		return usageErrorf("want %d argument(s) (%s), got %d", len(names), strings.Join(names, " "), len(args))
	}
}
