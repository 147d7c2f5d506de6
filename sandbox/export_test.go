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
// has not reported reaped, but for the warm child, which is no build's.
func SpawnerChildren(r *Runner) int {
	var warm *spawnedChild
	if r.warm != nil {
		r.warm.mu.Lock() // held while the warm child is asked for
		defer r.warm.mu.Unlock()
		if r.warm.cur != nil {
			warm = r.warm.cur.c
		}
	}
	r.spawner.mu.Lock()
	sp := r.spawner.cur
	r.spawner.mu.Unlock()
	if sp == nil {
		return 0
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	n := len(sp.children)
	if warm != nil && sp.children[warm.id] == warm {
		n--
	}
	return n
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

// WarmBuilds returns how many builds of r ran in a pre-spawned child.
func WarmBuilds(r *Runner) uint64 {
	if r.warm == nil {
		return 0
	}
	return r.warm.used.Load()
}

// WarmChild returns the pid and host uid of r's pre-spawned child, once
// the spawner started it, or 0, 0.
func WarmChild(r *Runner) (pid, uid int) {
	if r.warm == nil {
		return 0, 0
	}
	r.warm.mu.Lock()
	defer r.warm.mu.Unlock()
	if w := r.warm.cur; w != nil && w.c.started() {
		return w.c.pid(), w.uid
	}
	return 0, 0
}
