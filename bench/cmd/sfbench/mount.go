package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// mount is a running `storefs mount` of the prepared store on a directory
// in the work directory. The harness only starts and stops it; the mount
// is read by subprocesses (dd, find, stat, sfbench stampede).
type mount struct {
	dir, state, log string
	cmd             *exec.Cmd
	exited          chan error
}

// startMount mounts state on dir and waits until both the mount and the
// daemon's socket are up, as tests/mount_test.go does. --verbose makes the
// daemon log each build ("msg=building drv=…"), which counts builds.
func (h *harness) startMount(state, dir string) (*mount, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m := &mount{dir: dir, state: state, log: filepath.Join(h.logs, "mount.log"), exited: make(chan error, 1)}
	logf, err := os.Create(m.log)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(h.storefs, "--state-dir", state, "--verbose", "mount", dir)
	m.cmd.Stderr = logf
	m.cmd.Stdout = logf
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { m.exited <- m.cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(60 * time.Second)
	for !isMountpoint(dir) || !exists(filepath.Join(state, "daemon.sock")) {
		select {
		case err := <-m.exited:
			return nil, fmt.Errorf("storefs mount exited: %v\n%s", err, tail(m.log, 15))
		default:
		}
		if time.Now().After(deadline) {
			m.cmd.Process.Kill()
			return nil, fmt.Errorf("the mount did not come up in 60 s:\n%s", tail(m.log, 15))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m, nil
}

// stop sends SIGTERM and waits for the daemon to unmount and exit.
func (m *mount) stop() error {
	if m == nil {
		return nil
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-m.exited:
	case <-time.After(30 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
		err = fmt.Errorf("storefs mount did not stop on SIGTERM")
	}
	if isMountpoint(m.dir) {
		syscall.Unmount(m.dir, syscall.MNT_DETACH)
		if err == nil {
			err = fmt.Errorf("%s was still mounted after the daemon stopped", m.dir)
		}
	}
	return err
}

// builds counts the builds of drv that the daemon logged.
func (m *mount) builds(drv string) int {
	b, _ := os.ReadFile(m.log)
	return strings.Count(string(b), "msg=building drv="+drv)
}

// path is the mount's view of a store path.
func (m *mount) path(storePath string) string {
	return filepath.Join(m.dir, filepath.Base(storePath))
}

// backing is the backing directory's copy of a store path.
func (m *mount) backing(storePath string) string {
	return filepath.Join(m.state, "store", filepath.Base(storePath))
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func isMountpoint(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
