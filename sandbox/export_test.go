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
