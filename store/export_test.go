package store

// SetGCBatchHook makes s call fn before each batch of a collection is
// checked against the temporary roots and made invalid: tests add roots
// or referrers in the window between computing the dead set and deleting.
func SetGCBatchHook(s *Store, fn func(batch []Path)) { s.gcBatchHook = fn }
