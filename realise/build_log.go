package realise

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/storefs/storefs/store"
)

// errLogLimit is returned by buildLog.Write once the builder wrote more
// than max-build-log-size; the sandbox then kills the build.
var errLogLimit = errors.New("log limit exceeded")

// maxLineLen bounds a line kept for the tail and for events, so that a
// builder printing megabytes without a newline cannot make us hold them.
const maxLineLen = 64 << 10

// buildLog receives a builder's output: it keeps the whole log compressed
// on disk, the last lines for the error of a failed build, enforces
// max-build-log-size, reports activity (for max-silent-time) and emits a
// BuildLog event per line.
type buildLog struct {
	w        *Worker
	drv      store.Path
	activity func()

	mu      sync.Mutex
	file    *os.File
	enc     *zstd.Encoder
	size    int64
	limit   int64
	tail    []string
	tailMax int
	line    []byte
}

func (w *Worker) newBuildLog(drv store.Path, activity func()) (*buildLog, error) {
	l := &buildLog{w: w, drv: drv, activity: activity, limit: w.opts.MaxLogSize, tailMax: max(w.opts.LogLines, 0)}
	if w.opts.LogDir == "" {
		return l, nil
	}
	name := LogPath(w.opts.LogDir, drv)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("creating build log: %w", err)
	}
	enc, _ := w.logEncoders.Get().(*zstd.Encoder)
	if enc == nil {
		// Making an encoder costs far more than a trivial build's log;
		// they are reused through the pool.
		if enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1)); err != nil {
			f.Close()
			return nil, fmt.Errorf("creating build log: %w", err)
		}
	}
	enc.Reset(f)
	l.file, l.enc = f, enc
	return l, nil
}

func (l *buildLog) Write(p []byte) (int, error) {
	n := len(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.activity != nil {
		l.activity()
	}
	l.size += int64(n)
	if l.limit > 0 && l.size > l.limit {
		return 0, errLogLimit
	}
	if l.enc != nil {
		if _, err := l.enc.Write(p); err != nil {
			return 0, fmt.Errorf("writing build log: %w", err)
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.appendLine(p)
			break
		}
		l.appendLine(p[:i])
		l.flushLine()
		p = p[i+1:]
	}
	return n, nil
}

// appendLine adds to the current line; a carriage return starts it over,
// as a terminal would show a progress indicator.
func (l *buildLog) appendLine(p []byte) {
	if i := bytes.LastIndexByte(p, '\r'); i >= 0 {
		if i == len(p)-1 && len(p) > 0 {
			// "\r\n": the line ends here; keep what came before.
			p = p[:i]
		} else {
			l.line = l.line[:0]
			p = p[i+1:]
		}
	}
	if room := maxLineLen - len(l.line); room > 0 {
		l.line = append(l.line, p[:min(len(p), room)]...)
	}
}

func (l *buildLog) flushLine() {
	line := string(l.line)
	l.line = l.line[:0]
	if l.tailMax > 0 {
		if len(l.tail) == l.tailMax {
			copy(l.tail, l.tail[1:])
			l.tail = l.tail[:l.tailMax-1]
		}
		l.tail = append(l.tail, line)
	}
	l.w.emit(Event{Kind: BuildLog, Drv: l.drv, Line: line})
}

// Tail returns the last lines of the log.
func (l *buildLog) Tail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tail...)
}

// Close ends the last line and closes the log file.
func (l *buildLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.line) > 0 {
		l.flushLine()
	}
	if l.enc == nil {
		return nil
	}
	err := l.enc.Close()
	if cerr := l.file.Close(); err == nil {
		err = cerr
	}
	l.w.logEncoders.Put(l.enc)
	l.enc, l.file = nil, nil
	return err
}

// LogPath is where the log of drv's last build is kept under logDir, laid
// out as Nix lays out its log directory (drvs/<two chars>/<rest>).
func LogPath(logDir string, drv store.Path) string {
	base := drv.Base()
	return filepath.Join(logDir, "drvs", base[:2], base[2:]+".zst")
}

// ReadLog returns the log of drv's last build.
func ReadLog(logDir string, drv store.Path) ([]byte, error) {
	f, err := os.Open(LogPath(logDir, drv))
	if err != nil {
		return nil, fmt.Errorf("no build log for '%s': %w", drv, err)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("reading build log of '%s': %w", drv, err)
	}
	defer dec.Close()
	b, err := io.ReadAll(dec)
	if err != nil {
		return nil, fmt.Errorf("reading build log of '%s': %w", drv, err)
	}
	return b, nil
}
