package realise

import (
	"github.com/storefs/storefs/store"
)

// EventKind says what happened.
type EventKind int

// The kinds of event.
const (
	// BuildStarted: a builder starts for Drv (Mode tells build or check).
	BuildStarted EventKind = iota + 1
	// BuildLog: Drv's builder printed Line (without its newline).
	BuildLog
	// BuildFinished: Drv's build ended with Status (Err set on failure).
	BuildFinished
	// SubstituteStarted: Path is being copied from Substituter.
	SubstituteStarted
	// SubstituteFinished: Path's substitution ended with Status.
	SubstituteFinished
	// PathValid: Path became valid here (built, substituted or added).
	PathValid
	// Note: a message for the user about Drv or Path, in Line.
	Note
)

// Event is a progress report of the worker. Events go to every
// subscriber: builds are shared between all who wait for them.
type Event struct {
	Kind        EventKind
	Drv         store.Path
	Path        store.Path
	Substituter string
	Mode        BuildMode
	Line        string
	Status      Status
	Err         *BuildError
}

// Subscribe registers fn to receive events until the returned function is
// called. fn is called from the worker's goroutines and must not block.
func (w *Worker) Subscribe(fn func(Event)) (unsubscribe func()) {
	w.mu.Lock()
	id := w.nextSub
	w.nextSub++
	w.subs[id] = fn
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.subs, id)
		w.mu.Unlock()
	}
}

func (w *Worker) emit(e Event) {
	w.mu.Lock()
	fns := make([]func(Event), 0, len(w.subs))
	for _, fn := range w.subs {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	for _, fn := range fns {
		fn(e)
	}
}
