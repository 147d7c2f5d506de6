// Package daemon is the mount process's API on a unix socket, and the
// client that the CLI uses while a daemon runs.
//
// bbolt lets one process write the database, and the mount daemon owns
// it; every other storefs command then runs inside the daemon, on the
// daemon's store and worker, so that its builds coalesce with lookups in
// the mount. The protocol is therefore small: the client sends its command
// line and standard input, the daemon runs the command and sends back
// standard output, standard error and the exit status (see protocol.go).
// The package knows nothing of the commands: the server runs a Handler,
// which cmd/storefs provides.
//
// A Server is safe for concurrent use; each connection runs in its own
// goroutine, and Serve waits for them after its context is done, having
// cancelled the commands still running. A client that disconnects cancels
// its command.
package daemon
