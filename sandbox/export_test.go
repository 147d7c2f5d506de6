package sandbox

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
