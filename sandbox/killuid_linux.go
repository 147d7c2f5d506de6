package sandbox

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// killUID kills every process whose real uid is uid, like Nix's killUser
// for a build user, until none is left (a killed process cannot fork any
// more, so this ends; the bound only guards against a process stuck in the
// kernel). Zombies are skipped: they are already dead and wait for their
// parent. Only unsandboxed builds need it; a sandboxed build's processes
// die with its pid namespace.
func killUID(uid int) {
	want := []byte("\nUid:\t" + strconv.Itoa(uid) + "\t")
	for round := 0; round < 1000; round++ {
		ents, err := os.ReadDir("/proc")
		if err != nil {
			return
		}
		killed := false
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			status, err := os.ReadFile("/proc/" + e.Name() + "/status")
			if err != nil || !bytes.Contains(status, want) || bytes.Contains(status, []byte("\nState:\tZ")) {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = true
			}
		}
		if !killed {
			return
		}
	}
}
