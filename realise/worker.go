package realise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/storefs/storefs/sandbox"
	"github.com/storefs/storefs/store"
)

// Runner runs one sandboxed build; *sandbox.Runner is the real one.
type Runner interface {
	Run(ctx context.Context, spec *sandbox.Spec, log io.Writer) (*sandbox.Result, error)
}

// BuildMode is Nix's build mode.
type BuildMode int

// The build modes.
const (
	// Normal realises what is not valid yet.
	Normal BuildMode = iota
	// Check rebuilds valid outputs and compares them (--check).
	Check
	// Repair rebuilds or re-substitutes outputs whose contents no longer
	// match their NAR hash (--repair).
	Repair
)

// errOrphaned is the cause given to a goal cancelled because no one waits
// for it any more.
var errOrphaned = errors.New("nobody waits for this goal any more")

// goalKind tells derivation goals from substitution goals.
type goalKind uint8

const (
	derivationGoal goalKind = iota + 1
	// substitutionGoal substitutes a path, nothing else.
	substitutionGoal
	// pathGoal realises a path that is not a derivation: substituted if
	// a cache has it, else built through the derivation producing it.
	pathGoal
)

type goalKey struct {
	kind goalKind
	path store.Path
	mode BuildMode
}

// goal is the unit of work: one per derivation (building its outputs) or
// per store path (substituting it), shared by everyone who wants it. A
// goal runs in its own goroutine under the worker's context; holders (the
// requests and parent goals that wait for it) are counted, and an orphan
// is cancelled when Options.CancelOrphans is set.
type goal struct {
	key goalKey
	// pol is the policy of the request that started the goal, handed on
	// to the goals it starts.
	pol    policy
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}

	// Guarded by Worker.mu.
	holders int
	// waitsOn are the goals of a substitution goal's references while it
	// waits for them: the edges in which Worker.waitOn looks for cycles.
	waitsOn []*goal
	// wanted is the set of a derivation goal's outputs that were asked
	// for; nil means all. Requesters merge theirs in while the goal runs.
	wanted map[string]bool
	// wantedGen counts the changes to wanted; usedGen is the count the
	// goal's body last read (takeWantedOutputs). When they differ at the
	// end, outputs were asked for after the body decided what to do, and
	// it runs again (Nix's needRestart).
	wantedGen, usedGen int

	// res is set before done is closed.
	res *goalResult
}

// goalResult is what a goal ended with.
type goalResult struct {
	status Status
	err    *BuildError
	// outputs are a derivation goal's output paths by name.
	outputs map[string]store.Path
}

// Worker runs goals: it realises store paths by building derivations in
// the sandbox (and, where caches are configured, substituting). It is safe
// for concurrent use; Close stops it.
type Worker struct {
	st     *store.Store
	runner Runner
	opts   Options
	logger *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// buildSlots holds a token per running build (max-jobs).
	buildSlots chan struct{}
	// substSlots holds a token per running download
	// (max-substitution-jobs).
	substSlots chan struct{}
	// logEncoders pools the zstd encoders of build logs.
	logEncoders sync.Pool
	// gcMu lets one automatic garbage collection run at a time.
	gcMu sync.Mutex

	mu      sync.Mutex
	goals   map[goalKey]*goal
	subs    map[int]func(Event)
	nextSub int
}

// New returns a worker over st that builds with runner.
func New(st *store.Store, runner Runner, opts *Options) (*Worker, error) {
	o := opts.withDefaults()
	if !o.Sandbox && string(st.Dir) != st.RealDir() {
		return nil, fmt.Errorf("building without the sandbox needs the store directory %s to be the real directory %s", st.Dir, st.RealDir())
	}
	if o.LogDir != "" {
		if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating log directory: %w", err)
		}
	}
	w := &Worker{
		st:         st,
		runner:     runner,
		opts:       o,
		logger:     o.Logger,
		buildSlots: make(chan struct{}, o.MaxJobs),
		substSlots: make(chan struct{}, o.MaxSubstitutionJobs),
		goals:      map[goalKey]*goal{},
		subs:       map[int]func(Event){},
	}
	if w.logger == nil {
		w.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w, nil
}

// Close cancels every goal, kills running builders and waits for the
// goals to end.
func (w *Worker) Close() error {
	w.cancel()
	w.wg.Wait()
	return nil
}

// Store is the store the worker realises paths in.
func (w *Worker) Store() *store.Store { return w.st }

// acquire returns the goal for key, starting it if there is none (or the
// one there is cancelled), and counts the caller as a holder. For a
// derivation goal, wanted (nil: all) is merged into the goal's.
func (w *Worker) acquire(key goalKey, pol policy, wanted []string, body func(*goal) *goalResult) *goal {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g, ok := w.goals[key]; ok && g.ctx.Err() == nil {
		g.holders++
		if g.wanted != nil {
			if wanted == nil {
				g.wanted = nil
				g.wantedGen++
			} else {
				for _, o := range wanted {
					if !g.wanted[o] {
						g.wanted[o] = true
						g.wantedGen++
					}
				}
			}
		}
		return g
	}
	g := &goal{key: key, pol: pol, done: make(chan struct{}), holders: 1}
	if wanted != nil {
		g.wanted = map[string]bool{}
		for _, o := range wanted {
			g.wanted[o] = true
		}
	}
	g.ctx, g.cancel = context.WithCancelCause(w.ctx)
	w.goals[key] = g
	w.wg.Add(1)
	go w.runGoal(g, body)
	return g
}

func (w *Worker) runGoal(g *goal, body func(*goal) *goalResult) {
	defer w.wg.Done()
	var res *goalResult
	for {
		r := body(g)
		if r.err == nil && !r.status.Success() {
			panic("realise: invariant broken: a failed goal without an error")
		}
		if res == nil || r.status != AlreadyValid {
			res = r // a rerun that found all valid keeps the first run's status
		} else {
			res.outputs = r.outputs
		}
		w.mu.Lock()
		if r.status.Success() && g.wantedGen != g.usedGen && g.ctx.Err() == nil {
			// More outputs are wanted than this run saw: run again for
			// them, still in the map so requesters keep joining.
			w.mu.Unlock()
			continue
		}
		if w.goals[g.key] == g {
			delete(w.goals, g.key)
		}
		w.mu.Unlock()
		break
	}
	g.res = res
	g.cancel(nil)
	close(g.done)
}

// release drops a holder; an orphaned goal is cancelled if so configured.
func (w *Worker) release(g *goal) {
	w.mu.Lock()
	g.holders--
	orphan := g.holders == 0
	w.mu.Unlock()
	if orphan && w.opts.CancelOrphans {
		g.cancel(errOrphaned)
	}
}

// takeWantedOutputs is wantedOutputs for the goal's body, which decides
// with it what to realise: see goal.usedGen.
func (w *Worker) takeWantedOutputs(g *goal) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	g.usedGen = g.wantedGen
	return copyWanted(g.wanted)
}

// wantedOutputs is the current wanted set of a derivation goal (nil: all).
func (w *Worker) wantedOutputs(g *goal) map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return copyWanted(g.wanted)
}

func copyWanted(wanted map[string]bool) map[string]bool {
	if wanted == nil {
		return nil
	}
	out := make(map[string]bool, len(wanted))
	for k := range wanted {
		out[k] = true
	}
	return out
}

// wait waits for g to end or ctx to be done.
func wait(ctx context.Context, g *goal) (*goalResult, error) {
	select {
	case <-g.done:
		return g.res, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// waitAll waits for goals; without keepGoing it stops at the first
// failure. It returns the failures seen, in the order they happened.
func waitAll(ctx context.Context, goals []*goal, keepGoing bool) ([]*goalResult, error) {
	var failed []*goalResult
	pending := len(goals)
	doneCh := make(chan *goal, len(goals))
	stop := make(chan struct{})
	defer close(stop)
	for _, g := range goals {
		go func(g *goal) {
			select {
			case <-g.done:
				doneCh <- g
			case <-stop:
			}
		}(g)
	}
	for pending > 0 {
		select {
		case g := <-doneCh:
			pending--
			if !g.res.status.Success() && g.res.status != NoSubstituters {
				failed = append(failed, g.res)
				if !keepGoing {
					return failed, nil
				}
			}
		case <-ctx.Done():
			return failed, context.Cause(ctx)
		}
	}
	return failed, nil
}

// Target is something to realise: a derivation (with the outputs wanted,
// nil meaning all) or any other store path.
type Target struct {
	Path    store.Path
	Outputs []string
}

func (t Target) String() string {
	if len(t.Outputs) == 0 {
		return string(t.Path)
	}
	s := string(t.Path) + "!"
	for i, o := range t.Outputs {
		if i > 0 {
			s += ","
		}
		s += o
	}
	return s
}

// Request is one call of Realise.
type Request struct {
	Targets []Target
	// KeepGoing is keep-going: without it the first failure stops
	// everything else this request started.
	KeepGoing bool
	Mode      BuildMode

	// The settings below are a request's own, as a Nix daemon takes them
	// from each client. They apply to the goals the request starts; a
	// goal it joins keeps the settings of the request that started it.
	// Zero values leave the Worker's Options in force.

	// Fallback builds when substitutes fail (Options.Fallback).
	Fallback bool
	// KeepFailed keeps failed build directories (Options.KeepFailed).
	KeepFailed bool
	// Timeout and MaxSilentTime override the Options' when non-zero.
	Timeout, MaxSilentTime time.Duration
	// Cores overrides Options.Cores when non-zero.
	Cores int
}

// policy is what a goal does on failure and how it builds: the Worker's
// Options with its request's settings applied (see Request).
type policy struct {
	keepGoing, fallback, keepFailed bool
	timeout, maxSilentTime          time.Duration
	cores                           int
}

func (w *Worker) policyFor(req *Request) policy {
	p := policy{
		keepGoing:     req.KeepGoing,
		fallback:      w.opts.Fallback || req.Fallback,
		keepFailed:    w.opts.KeepFailed || req.KeepFailed,
		timeout:       w.opts.Timeout,
		maxSilentTime: w.opts.MaxSilentTime,
		cores:         w.opts.Cores,
	}
	if req.Timeout != 0 {
		p.timeout = req.Timeout
	}
	if req.MaxSilentTime != 0 {
		p.maxSilentTime = req.MaxSilentTime
	}
	if req.Cores != 0 {
		p.cores = req.Cores
	}
	return p
}

// Result is how one target ended.
type Result struct {
	Target Target
	Status Status
	// Outputs are the paths of a derivation target's wanted outputs, or
	// the path itself for other targets.
	Outputs map[string]store.Path
	// Err is set when the target failed.
	Err *BuildError
}

// Report is the outcome of a request.
type Report struct {
	Results []Result
}

// Failed reports whether any target failed.
func (r *Report) Failed() bool {
	for _, res := range r.Results {
		if !res.Status.Success() {
			return true
		}
	}
	return false
}

// Bits are the exit-status bits of all failures of the request.
func (r *Report) Bits() ExitBits {
	var b ExitBits
	for _, res := range r.Results {
		if res.Err != nil {
			b |= res.Err.Bits
		}
	}
	return b
}

// Realise realises the request's targets and waits for them. Cancelling
// ctx ends the wait (the report then holds what had finished); the goals
// go on if others still wait for them. Failures are in the report, not
// the error, which is for the request itself (a target that cannot be
// realised at all, or ctx).
func (w *Worker) Realise(ctx context.Context, req Request) (*Report, error) {
	type top struct {
		t Target
		g *goal
	}
	var tops []top
	defer func() {
		for _, t := range tops {
			w.release(t.g)
		}
	}()
	pol := w.policyFor(&req)
	for _, t := range req.Targets {
		g, err := w.goalFor(t, pol, req.Mode)
		if err != nil {
			return nil, err
		}
		tops = append(tops, top{t, g})
	}
	goals := make([]*goal, len(tops))
	for i, t := range tops {
		goals[i] = t.g
	}
	_, err := waitAll(ctx, goals, req.KeepGoing)
	rep := &Report{}
	for _, t := range tops {
		res := Result{Target: t.t}
		select {
		case <-t.g.done:
			res.Status, res.Err = t.g.res.status, t.g.res.err
			res.Outputs = selectOutputs(t.t, t.g.res)
		default:
			// Stopped waiting: cancelled, or another target failed
			// without keep-going.
			res.Status = Cancelled
			res.Err = &BuildError{Drv: t.t.Path, Status: Cancelled, Msg: fmt.Sprintf("realising '%s' was stopped", t.t.Path)}
		}
		rep.Results = append(rep.Results, res)
	}
	if err != nil {
		return rep, err
	}
	return rep, nil
}

// goalFor starts or joins the goal that realises t.
func (w *Worker) goalFor(t Target, pol policy, mode BuildMode) (*goal, error) {
	if t.Path.Dir() != w.st.Dir {
		return nil, fmt.Errorf("path '%s' is not in the Nix store", t.Path)
	}
	if t.Path.IsDerivation() {
		return w.acquire(goalKey{derivationGoal, t.Path, mode}, pol, t.Outputs, w.runDerivationGoal), nil
	}
	if len(t.Outputs) > 0 {
		return nil, fmt.Errorf("'%s' is not a derivation, so it has no outputs to select", t.Path)
	}
	return w.acquire(goalKey{pathGoal, t.Path, mode}, pol, nil, w.runPathGoal), nil
}

func selectOutputs(t Target, res *goalResult) map[string]store.Path {
	if res.outputs == nil {
		return map[string]store.Path{"out": t.Path}
	}
	if len(t.Outputs) == 0 {
		return res.outputs
	}
	out := map[string]store.Path{}
	for _, o := range t.Outputs {
		if p, ok := res.outputs[o]; ok {
			out[o] = p
		}
	}
	return out
}

// Knows reports whether p is valid or can be realised: a valid derivation
// in the output index produces it, or a substituter has it.
func (w *Worker) Knows(ctx context.Context, p store.Path) (bool, error) {
	if ok, err := w.st.IsValid(p); err != nil || ok {
		return ok, err
	}
	if !p.IsDerivation() {
		derivers, err := w.st.Derivers(p)
		if err != nil {
			return false, err
		}
		for _, d := range derivers {
			if ok, err := w.st.IsValid(d.Drv); err != nil || ok {
				return ok, err
			}
		}
	}
	return w.hasSubstitute(ctx, p)
}

// RealisePath makes one store path valid (building or substituting what it
// takes) and returns its failure as an error: a *BuildError, or ctx's
// cause when the wait was cut short (the goal goes on for others).
func (w *Worker) RealisePath(ctx context.Context, p store.Path) error {
	rep, err := w.Realise(ctx, Request{Targets: []Target{{Path: p}}})
	if err != nil {
		return err
	}
	if res := rep.Results[0]; res.Err != nil {
		if res.Status == Cancelled && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return res.Err
	}
	return nil
}

// keepGoing is pol with keep-going on: the substitutions of a
// derivation's outputs all run, so that it knows which failed.
func keepGoing(pol policy) policy {
	pol.keepGoing = true
	return pol
}
