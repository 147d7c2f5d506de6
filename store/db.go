package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names of the path-info database.
var (
	bucketMeta = []byte("meta")
	// bucketPaths maps a valid path's base name to its encoded PathInfo.
	bucketPaths = []byte("paths")
	// bucketReferrers holds "<referenced base>\x00<referrer base>" keys:
	// the reverse edges of References, kept in the same transactions.
	bucketReferrers = []byte("referrers")
	// bucketDerivers is the output index: "<output base>\x00<drv base>" →
	// output name, for every output of every valid .drv.
	bucketDerivers = []byte("derivers")
	// bucketDrvOutputs is its reverse: "<drv base>\x00<output name>" →
	// output base.
	bucketDrvOutputs = []byte("drvoutputs")
	// bucketNARInfo remembers binary caches' answers: "<cache
	// URL>\x00<hash part>" → encoded narInfoRecord.
	bucketNARInfo = []byte("narinfo")
)

const schemaVersion = "1"

// DB is the path-info database: which paths are valid and what is known of
// them. It is a bbolt file; only one process may have it open (the store's
// lock ensures that). It is safe for concurrent use.
type DB struct {
	bolt *bolt.DB
	dir  Dir
	// narinfo batches the remembered answers of binary caches.
	narinfo narInfoWriter
	// commits groups concurrent registrations into shared commits.
	commits commitQueue
}

// DerivationOutputRef names one output of a derivation.
type DerivationOutputRef struct {
	Drv    Path
	Output string
}

// openDB opens or creates the database file for store directory dir.
func openDB(file string, dir Dir) (*DB, error) {
	b, err := bolt.Open(file, 0o600, &bolt.Options{
		Timeout:        time.Second,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, fmt.Errorf("opening database %s: %w", file, err)
	}
	db := &DB{bolt: b, dir: dir}
	db.narinfo.now = make(chan struct{})
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketPaths, bucketReferrers, bucketDerivers, bucketDrvOutputs, bucketNARInfo} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get([]byte("storeDir")); v != nil && string(v) != string(dir) {
			return fmt.Errorf("database is for store directory %s, not %s", v, dir)
		}
		if v := meta.Get([]byte("version")); v != nil && string(v) != schemaVersion {
			return fmt.Errorf("database has schema version %s, this storefs knows %s", v, schemaVersion)
		}
		if err := meta.Put([]byte("storeDir"), []byte(dir)); err != nil {
			return err
		}
		return meta.Put([]byte("version"), []byte(schemaVersion))
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("initialising database %s: %w", file, err)
	}
	return db, nil
}

// Close closes the database file.
func (db *DB) Close() error {
	db.waitNARInfo()
	return db.bolt.Close()
}

func edgeKey(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

// scanPrefix calls fn with the second half of each "<prefix>\x00<rest>" key.
func scanPrefix(b *bolt.Bucket, prefix string, fn func(rest string, v []byte) error) error {
	p := edgeKey(prefix, "")
	c := b.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if err := fn(string(k[len(p):]), v); err != nil {
			return err
		}
	}
	return nil
}

// IsValid reports whether p is a valid path.
func (db *DB) IsValid(p Path) (bool, error) {
	var ok bool
	err := db.bolt.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketPaths).Get([]byte(p.Base())) != nil
		return nil
	})
	return ok, err
}

// PathInfo returns what is known of p, or ErrNotValid.
func (db *DB) PathInfo(p Path) (*PathInfo, error) {
	var info *PathInfo
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		info, err = db.getInfo(tx, p.Base())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("querying %s: %w", p, err)
	}
	return info, nil
}

func (db *DB) getInfo(tx *bolt.Tx, base string) (*PathInfo, error) {
	v := tx.Bucket(bucketPaths).Get([]byte(base))
	if v == nil {
		return nil, ErrNotValid
	}
	return decodePathInfo(db.dir, base, v)
}

// PathFromHashPart returns the valid path with the given hash part.
func (db *DB) PathFromHashPart(hashPart string) (Path, error) {
	var p Path
	err := db.bolt.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketPaths).Cursor().Seek([]byte(hashPart + "-"))
		if k != nil && bytes.HasPrefix(k, []byte(hashPart+"-")) {
			p = Path(string(db.dir) + "/" + string(k))
			return nil
		}
		return ErrNotValid
	})
	return p, err
}

// AllValid lists every valid path in order.
func (db *DB) AllValid() ([]Path, error) {
	var out []Path
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPaths).ForEach(func(k, _ []byte) error {
			out = append(out, Path(string(db.dir)+"/"+string(k)))
			return nil
		})
	})
	return out, err
}

// Referrers lists the valid paths that refer to p.
func (db *DB) Referrers(p Path) ([]Path, error) {
	var out []Path
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return scanPrefix(tx.Bucket(bucketReferrers), p.Base(), func(rest string, _ []byte) error {
			out = append(out, Path(string(db.dir)+"/"+rest))
			return nil
		})
	})
	return out, err
}

// referredFromOutside lists the paths of ps that a valid path outside
// inside refers to, in one read transaction.
func (db *DB) referredFromOutside(ps []Path, inside PathSet) ([]Path, error) {
	var out []Path
	err := db.bolt.View(func(tx *bolt.Tx) error {
		refs := tx.Bucket(bucketReferrers)
		for _, p := range ps {
			held := false
			err := scanPrefix(refs, p.Base(), func(rest string, _ []byte) error {
				if r := Path(string(db.dir) + "/" + rest); r != p && !inside.Has(r) {
					held = true
				}
				return nil
			})
			if err != nil {
				return err
			}
			if held {
				out = append(out, p)
			}
		}
		return nil
	})
	return out, err
}

// Closure returns the requisites of ps: the paths themselves and everything
// they refer to, transitively, sorted. All must be valid.
func (db *DB) Closure(ps []Path) ([]Path, error) {
	seen := NewPathSet()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		stack := append([]Path(nil), ps...)
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen.Has(p) {
				continue
			}
			info, err := db.getInfo(tx, p.Base())
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			seen.Add(p)
			for _, r := range info.References {
				if !seen.Has(r) {
					stack = append(stack, r)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("computing closure: %w", err)
	}
	return seen.Sorted(), nil
}

// Derivers lists the valid derivations known to produce output path p.
func (db *DB) Derivers(p Path) ([]DerivationOutputRef, error) {
	var out []DerivationOutputRef
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return scanPrefix(tx.Bucket(bucketDerivers), p.Base(), func(rest string, v []byte) error {
			out = append(out, DerivationOutputRef{Drv: Path(string(db.dir) + "/" + rest), Output: string(v)})
			return nil
		})
	})
	return out, err
}

// DerivationOutputs returns output name → path of a valid .drv, from the
// output index.
func (db *DB) DerivationOutputs(drv Path) (map[string]Path, error) {
	out := map[string]Path{}
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return scanPrefix(tx.Bucket(bucketDrvOutputs), drv.Base(), func(rest string, v []byte) error {
			out[rest] = Path(string(db.dir) + "/" + string(v))
			return nil
		})
	})
	return out, err
}

// register makes infos valid in one transaction. A reference must be
// valid already or be one of infos (the closure invariant). outputs gives,
// for each .drv among infos, its output paths by name, for the output
// index. Registering a path that is valid already replaces its info.
func (db *DB) register(infos []*PathInfo, outputs map[Path]map[string]Path) error {
	if len(infos) == 0 {
		return nil
	}
	req := &registration{infos: infos, outputs: outputs, done: make(chan error, 1)}
	for _, info := range infos {
		v, err := encodePathInfo(info)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", info.Path, err)
		}
		req.encoded = append(req.encoded, v)
	}
	return db.commits.submit(db, req)
}

// registration is one call of register waiting for its commit.
type registration struct {
	infos   []*PathInfo
	encoded [][]byte
	outputs map[Path]map[string]Path
	done    chan error
}

// commitQueue is a group commit: registrations that arrive while a commit
// is running are committed together in the next one. A registration alone
// is committed at once (bbolt's Batch would wait 10 ms for company, which a
// sequential build of a DAG pays per node), and many concurrent ones
// (substitutions, parallel builds) share one fsync'ed commit.
type commitQueue struct {
	mu      sync.Mutex
	pending []*registration
	running bool
}

func (q *commitQueue) submit(db *DB, req *registration) error {
	q.mu.Lock()
	q.pending = append(q.pending, req)
	if q.running {
		q.mu.Unlock()
		return <-req.done
	}
	q.running = true
	q.mu.Unlock()
	// This caller commits until nothing is pending; its own registration
	// is in the first batch.
	for {
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		if len(batch) == 0 {
			q.running = false
			q.mu.Unlock()
			return <-req.done
		}
		q.mu.Unlock()
		db.commitBatch(batch)
	}
}

// commitBatch applies registrations in one transaction. Each is checked
// before it writes anything, so one that breaks the closure invariant is
// refused alone while the others commit.
func (db *DB) commitBatch(batch []*registration) {
	results := make([]error, len(batch))
	err := db.bolt.Update(func(tx *bolt.Tx) error {
		for i, req := range batch {
			if results[i] = checkRegistration(tx, req); results[i] != nil {
				continue
			}
			// A failure while writing rolls the whole batch back.
			if err := applyRegistration(tx, db.dir, req); err != nil {
				return err
			}
		}
		return nil
	})
	for i, req := range batch {
		if err != nil {
			req.done <- err
		} else {
			req.done <- results[i]
		}
	}
}

// checkRegistration enforces the closure invariant: every reference is
// valid already, or registered in the same call.
func checkRegistration(tx *bolt.Tx, req *registration) error {
	paths := tx.Bucket(bucketPaths)
	inSet := make(map[string]bool, len(req.infos))
	for _, info := range req.infos {
		inSet[info.Path.Base()] = true
	}
	for _, info := range req.infos {
		for _, r := range info.References {
			if !inSet[r.Base()] && paths.Get([]byte(r.Base())) == nil {
				return fmt.Errorf("registering %s: reference %s is not valid: %w", info.Path, r, ErrNotValid)
			}
		}
	}
	return nil
}

func applyRegistration(tx *bolt.Tx, dir Dir, req *registration) error {
	paths := tx.Bucket(bucketPaths)
	refs := tx.Bucket(bucketReferrers)
	for i, info := range req.infos {
		base := info.Path.Base()
		if old := paths.Get([]byte(base)); old != nil {
			oldInfo, err := decodePathInfo(dir, base, old)
			if err != nil {
				return err
			}
			for _, r := range oldInfo.References {
				if err := refs.Delete(edgeKey(r.Base(), base)); err != nil {
					return err
				}
			}
		}
		if err := paths.Put([]byte(base), req.encoded[i]); err != nil {
			return err
		}
		for _, r := range info.References {
			if err := refs.Put(edgeKey(r.Base(), base), nil); err != nil {
				return err
			}
		}
	}
	derivers := tx.Bucket(bucketDerivers)
	drvOutputs := tx.Bucket(bucketDrvOutputs)
	for drv, outs := range req.outputs {
		for name, out := range outs {
			if err := derivers.Put(edgeKey(out.Base(), drv.Base()), []byte(name)); err != nil {
				return err
			}
			if err := drvOutputs.Put(edgeKey(drv.Base(), name), []byte(out.Base())); err != nil {
				return err
			}
		}
	}
	return nil
}

// errReferrers is returned when deleting paths that others refer to.
type referrersError struct {
	path      Path
	referrers []Path
}

func (e *referrersError) Error() string {
	return fmt.Sprintf("cannot delete path '%s' since it is still alive: referenced by '%s'", e.path, e.referrers[0])
}

func (e *referrersError) Unwrap() error { return ErrHasReferrers }

// unregister makes ps invalid in one transaction. It refuses while a path
// outside ps refers to one of them.
func (db *DB) unregister(ps []Path) error {
	set := make(map[string]bool, len(ps))
	for _, p := range ps {
		set[p.Base()] = true
	}
	return db.bolt.Update(func(tx *bolt.Tx) error {
		paths := tx.Bucket(bucketPaths)
		refs := tx.Bucket(bucketReferrers)
		for _, p := range ps {
			var alive []Path
			err := scanPrefix(refs, p.Base(), func(rest string, _ []byte) error {
				if !set[rest] {
					alive = append(alive, Path(string(db.dir)+"/"+rest))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if len(alive) > 0 {
				sort.Slice(alive, func(i, j int) bool { return alive[i] < alive[j] })
				return &referrersError{path: p, referrers: alive}
			}
		}
		for _, p := range ps {
			base := p.Base()
			info, err := db.getInfo(tx, base)
			if errors.Is(err, ErrNotValid) {
				continue
			}
			if err != nil {
				return err
			}
			for _, r := range info.References {
				if err := refs.Delete(edgeKey(r.Base(), base)); err != nil {
					return err
				}
			}
			if err := paths.Delete([]byte(base)); err != nil {
				return err
			}
			if err := deleteDrvIndex(tx, base); err != nil {
				return err
			}
		}
		return nil
	})
}

// deleteDrvIndex removes a derivation's entries from the output index.
func deleteDrvIndex(tx *bolt.Tx, drvBase string) error {
	drvOutputs := tx.Bucket(bucketDrvOutputs)
	derivers := tx.Bucket(bucketDerivers)
	var keys [][]byte
	err := scanPrefix(drvOutputs, drvBase, func(rest string, v []byte) error {
		keys = append(keys, edgeKey(drvBase, rest))
		return derivers.Delete(edgeKey(string(v), drvBase))
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := drvOutputs.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// narInfoRecord is a remembered narinfo answer.
type narInfoRecord struct {
	At    int64  `json:"t"`
	Found bool   `json:"f"`
	Data  []byte `json:"d,omitempty"`
}

// narInfoFlushDelay is how long remembered narinfo answers may wait in
// memory before they are committed together. They are not precious (a
// crash forgets a few, which are asked again), while a commit of its own
// would cost each lookup two fsyncs.
const narInfoFlushDelay = 200 * time.Millisecond

// narInfoWriter batches CacheNARInfo's writes; a goroutine started by the
// first write commits them and ends when nothing is pending.
type narInfoWriter struct {
	mu       sync.Mutex
	pending  map[string][]byte
	flushing bool
	done     chan struct{} // closed when the flusher ends; nil before
	err      error         // the last commit's error, reported once
	// now is closed by Close to make the flusher commit without waiting.
	now     chan struct{}
	nowOnce sync.Once
}

// CachedNARInfo returns what a binary cache answered for a hash part,
// when it was asked, and whether it had the path; ok is false when
// nothing is remembered.
func (db *DB) CachedNARInfo(cacheURL, hashPart string) (data []byte, found bool, at time.Time, ok bool, err error) {
	key := edgeKey(cacheURL, hashPart)
	db.narinfo.mu.Lock()
	v := db.narinfo.pending[string(key)]
	db.narinfo.mu.Unlock()
	if v == nil {
		err = db.bolt.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketNARInfo).Get(key); b != nil {
				v = append([]byte(nil), b...)
			}
			return nil
		})
		if err != nil || v == nil {
			return nil, false, time.Time{}, false, err
		}
	}
	var r narInfoRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, false, time.Time{}, false, fmt.Errorf("decoding cached narinfo: %w", err)
	}
	return r.Data, r.Found, time.Unix(r.At, 0), true, nil
}

// CacheNARInfo remembers a binary cache's answer (data is the narinfo
// text, nil when the cache did not have the path). The answer is visible
// at once and committed shortly after, with others.
func (db *DB) CacheNARInfo(cacheURL, hashPart string, data []byte, found bool, at time.Time) error {
	v, err := json.Marshal(narInfoRecord{At: at.Unix(), Found: found, Data: data})
	if err != nil {
		return err
	}
	w := &db.narinfo
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.err; err != nil {
		w.err = nil
		return fmt.Errorf("remembering narinfo answers: %w", err)
	}
	if w.pending == nil {
		w.pending = map[string][]byte{}
	}
	w.pending[string(edgeKey(cacheURL, hashPart))] = v
	if !w.flushing {
		w.flushing = true
		w.done = make(chan struct{})
		go db.flushNARInfo()
	}
	return nil
}

// flushNARInfo commits pending narinfo answers until none are left.
func (db *DB) flushNARInfo() {
	w := &db.narinfo
	for {
		select {
		case <-time.After(narInfoFlushDelay):
		case <-w.now:
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		if len(batch) == 0 {
			w.flushing = false
			close(w.done)
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketNARInfo)
			for k, v := range batch {
				if err := b.Put([]byte(k), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
		}
	}
}

// waitNARInfo commits pending narinfo answers at once and waits for it.
func (db *DB) waitNARInfo() {
	db.narinfo.nowOnce.Do(func() { close(db.narinfo.now) })
	db.narinfo.mu.Lock()
	done := db.narinfo.done
	db.narinfo.mu.Unlock()
	if done != nil {
		<-done
	}
}
