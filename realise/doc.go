// Package realise is storefs's build worker, a port of Nix's goals and
// worker: it makes store paths valid by building derivations in the
// sandbox (and substituting them from binary caches).
//
// # Goals
//
// A Worker runs one goal per derivation (building its outputs) and one per
// plain store path, never two for the same key: requests and parent goals
// that want the same thing wait on the same goal. A derivation goal goes:
// have the derivation → outputs already valid? → realise the inputs →
// wait for a build slot (max-jobs) and the output locks → check validity
// again → build in the sandbox → register the outputs, with Nix's result
// statuses and messages. Without keep-going a goal stops waiting for its
// inputs at the first failure.
//
// Goals run under the worker's context, not their requesters': a request
// that stops waiting (Ctrl-C, an interrupted lookup) only drops its hold.
// With Options.CancelOrphans a goal nobody holds is cancelled, which kills
// its builder's whole PID namespace.
//
// # Concurrency
//
// A Worker is safe for concurrent use. Realise blocks until its targets
// end or its context is done. Close cancels every goal and waits for them.
// Events go to every subscriber, from the goals' goroutines.
//
// # Output registration
//
// Outputs are checked (existence, permissions, fixed-output hash,
// reference cycles, allowed/disallowed references and sizes),
// canonicalised and scanned for references in one NAR pass, then renamed
// into the backing store and registered together in one transaction while
// the output locks are held: nothing half-built is ever valid.
package realise
