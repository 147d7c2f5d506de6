package sandbox

import "os"

// SpawnerPid returns the pid of r's spawner process, or 0 when r has none
// (none started yet, or closed). For the spawner's tests.
func SpawnerPid(r *Runner) int {
	r.spawner.mu.Lock()
	defer r.spawner.mu.Unlock()
	if r.spawner.cur == nil {
		return 0
	}
	return r.spawner.cur.proc.Pid
}

// SpawnerChildren returns how many children r's spawner was asked for and
// has not reported reaped.
func SpawnerChildren(r *Runner) int {
	r.spawner.mu.Lock()
	sp := r.spawner.cur
	r.spawner.mu.Unlock()
	if sp == nil {
		return 0
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return len(sp.children)
}

// RootKinds returns where a Runner may put its sandboxes' roots, for the
// tests of each: the tmpfs of ours or of the child's (which is the
// default depends on whether we are root), and the directory on disk of
// kernels without the new mount API.
func RootKinds() []string {
	if os.Getuid() == 0 {
		return []string{string(rootTmpfs), string(rootDisk)}
	}
	return []string{string(rootTmpfsChild), string(rootDisk)}
}

// SetRootKind makes r put its sandboxes' roots where kind, one of
// RootKinds, says.
func SetRootKind(r *Runner, kind string) { r.rootKind = rootKind(kind) }
