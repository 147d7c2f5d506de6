package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/storefs/storefs/realise"
	"github.com/storefs/storefs/store"
)

// progress shows a realisation on stderr: Nix's "building '…'..." lines,
// build logs with -L, and errors as they happen. On a terminal the
// building lines become one status line, "[done/running/expected built]".
type progress struct {
	w    io.Writer
	logs bool
	tty  bool

	mu       sync.Mutex
	expected int
	done     int
	running  map[store.Path]bool
	shown    map[*realise.BuildError]bool
	status   bool // a status line is on screen
}

func newProgress(w io.Writer, logs bool) *progress {
	p := &progress{w: w, logs: logs, running: map[store.Path]bool{}, shown: map[*realise.BuildError]bool{}}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

// announce says what will be built and fetched, as Nix does before it
// starts.
func (p *progress) announce(drvs, fetch []store.Path) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expected = len(drvs)
	list := func(ps []store.Path, one, many string) {
		if len(ps) == 0 {
			return
		}
		if len(ps) == 1 {
			fmt.Fprintln(p.w, one)
		} else {
			fmt.Fprintf(p.w, many+"\n", len(ps))
		}
		for _, d := range ps {
			fmt.Fprintf(p.w, "  %s\n", d)
		}
	}
	list(drvs, "this derivation will be built:", "these %d derivations will be built:")
	list(fetch, "this path will be fetched:", "these %d paths will be fetched:")
}

func drvName(p store.Path) string { return strings.TrimSuffix(p.Name(), ".drv") }

// line prints a line above the status line.
func (p *progress) line(s string) {
	p.clear()
	fmt.Fprintln(p.w, s)
	p.redraw()
}

func (p *progress) clear() {
	if p.status {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.status = false
	}
}

func (p *progress) redraw() {
	if !p.tty || len(p.running) == 0 {
		return
	}
	var names []string
	for d := range p.running {
		names = append(names, drvName(d))
	}
	fmt.Fprintf(p.w, "[%d/%d/%d built] building %s", p.done, len(p.running), max(p.expected, p.done+len(p.running)), strings.Join(names, ", "))
	p.status = true
}

func (p *progress) event(e realise.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Kind {
	case realise.BuildStarted:
		p.running[e.Drv] = true
		if !p.tty {
			verb := "building"
			if e.Mode == realise.Check {
				verb = "checking outputs of"
			}
			fmt.Fprintf(p.w, "%s '%s'...\n", verb, e.Drv)
			return
		}
		p.clear()
		p.redraw()
	case realise.BuildLog:
		if p.logs {
			p.line(drvName(e.Drv) + "> " + e.Line)
		}
	case realise.BuildFinished:
		delete(p.running, e.Drv)
		if e.Status.Success() {
			p.done++
		}
		if e.Err != nil && e.Status != realise.Cancelled {
			p.shown[e.Err] = true
			p.clear()
			printError(p.w, fmt.Errorf("%s", e.Err.Message(!p.logs)))
		}
		p.clear()
		p.redraw()
	case realise.Note:
		p.line(e.Line)
	case realise.SubstituteStarted:
		if !p.tty {
			fmt.Fprintf(p.w, "copying path '%s' from '%s'...\n", e.Path, e.Substituter)
		}
	}
}

// printed reports whether err was shown while building.
func (p *progress) printed(err *realise.BuildError) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shown[err]
}

// finish clears the status line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}
