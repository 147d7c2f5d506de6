package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/storefs/storefs/store"
)

// infoFile is the name of a cache's nix-cache-info file.
const infoFile = "nix-cache-info"

// maxInfoSize bounds the nix-cache-info file read from a cache.
const maxInfoSize = 64 << 10

// Info is a cache's nix-cache-info: what store it is for and how clients
// should use it.
type Info struct {
	// StoreDir is the store directory of the paths in the cache; a cache
	// is only usable by stores with the same one.
	StoreDir store.Dir
	// WantMassQuery says that clients may query many narinfos at once
	// (for `nix-env -qas`).
	WantMassQuery bool
	// Priority orders substituters, lower first; 0 when the file gives
	// none. cache.nixos.org says 40, nix-serve 30.
	Priority int
}

// ParseInfo parses a nix-cache-info file as Nix does: "Key: value"
// lines, values trimmed, lines without a colon and unknown keys ignored.
// A Priority that is not a number is an error.
func ParseInfo(data []byte) (*Info, error) {
	info := &Info{}
	for _, line := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch key {
		case "StoreDir":
			info.StoreDir = store.Dir(value)
		case "WantMassQuery":
			info.WantMassQuery = value == "1"
		case "Priority":
			n, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("invalid nix-cache-info: Priority '%s' is not a number", value)
			}
			info.Priority = n
		}
	}
	return info, nil
}

// String is the file's text, fields in Nix's order; WantMassQuery and
// Priority only when set.
func (info *Info) String() string {
	s := "StoreDir: " + string(info.StoreDir) + "\n"
	if info.WantMassQuery {
		s += "WantMassQuery: 1\n"
	}
	if info.Priority != 0 {
		s += "Priority: " + strconv.Itoa(info.Priority) + "\n"
	}
	return s
}

// checkInfo parses a cache's nix-cache-info, checks it is for the store
// directory dir, and applies the overrides of opts (priority=,
// want-mass-query=).
func checkInfo(data []byte, url string, o *options) (*Info, error) {
	info, err := ParseInfo(data)
	if err != nil {
		return nil, fmt.Errorf("binary cache '%s': %w", url, err)
	}
	if info.StoreDir != "" && info.StoreDir != o.StoreDir {
		return nil, fmt.Errorf("binary cache '%s' is for Nix stores with prefix '%s', not '%s'", url, info.StoreDir, o.StoreDir)
	}
	if o.Priority != 0 {
		info.Priority = o.Priority
	}
	if o.WantMassQuery != nil {
		info.WantMassQuery = *o.WantMassQuery
	}
	return info, nil
}

// infoMemo remembers what a cache's nix-cache-info said, so that checking
// the store directory before every narinfo and NAR read costs one read of
// the file per cache, not one per path (Nix reads it once, when it opens
// the store). Only the cache's answers are remembered: the file's
// contents, accepted or refused, or its absence. A failure to read it
// (the cache is down) is not, so the next call asks again.
type infoMemo struct {
	// sem is held while reading the file, so that the many lookups a
	// closure starts at once read it once; a channel rather than a mutex
	// so that a waiter can give up with its context.
	sem   chan struct{}
	known bool
	info  *Info // nil when the cache has no nix-cache-info
	err   error // checkInfo's refusal, or the ErrNotFound of no file
}

func newInfoMemo() *infoMemo { return &infoMemo{sem: make(chan struct{}, 1)} }

func (m *infoMemo) lock(ctx context.Context) error {
	select {
	case m.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (m *infoMemo) unlock() { <-m.sem }

// get returns the cache's Info as checkInfo makes it from the file that
// read returns, reading it only the first time.
func (m *infoMemo) get(ctx context.Context, read func() ([]byte, error), url string, o *options) (*Info, error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	defer m.unlock()
	if !m.known {
		data, err := read()
		switch {
		case err == nil:
			m.info, m.err = checkInfo(data, url, o)
		case errors.Is(err, ErrNotFound):
			m.info, m.err = nil, err
		default:
			return nil, err
		}
		m.known = true
	}
	if m.err != nil {
		return nil, m.err
	}
	// A copy: the caller may change it.
	info := *m.info
	return &info, nil
}

// usable returns nil when the cache may be read from: its nix-cache-info
// is for our store directory, or it has none (a cache never written to
// yet; Nix would write one for us). Otherwise it returns why not, such
// as "binary cache '…' is for Nix stores with prefix '/gnu/store', not
// '/nix/store'": narinfos of another store directory must never be
// believed, even if their paths happen to parse as ours.
func (m *infoMemo) usable(ctx context.Context, read func() ([]byte, error), url string, o *options) error {
	if _, err := m.get(ctx, read, url, o); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// forget makes the next get read the file again, after it was written.
func (m *infoMemo) forget(ctx context.Context) error {
	if err := m.lock(ctx); err != nil {
		return err
	}
	m.known, m.info, m.err = false, nil, nil
	m.unlock()
	return nil
}
