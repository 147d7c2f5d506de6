// Command probe runs inside the sandbox as a builder (it is static, so it
// needs nothing from the store) and prints, one per line, what the
// sandbox allows: the result of syscalls the seccomp filter must catch and
// of the process attributes Nix gives builders.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

func main() {
	// Before anything of ours opens a descriptor (the runtime's poller
	// does, for os files).
	open := 0
	for fd := 0; fd < 1024; fd++ {
		if _, _, e := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0); e == 0 {
			open++
		}
	}
	f := "/build/probe-file"
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		fmt.Println("setup:", err)
		os.Exit(1)
	}
	report("setxattr", syscall.Setxattr(f, "user.test", []byte("x"), 0))
	report("lsetxattr", lsetxattr(f))
	fd, _ := syscall.Open(f, syscall.O_RDONLY, 0)
	report("fsetxattr", fsetxattr(fd))
	report("chmod 4755", syscall.Chmod(f, 0o4755))
	report("chmod 2755", syscall.Chmod(f, 0o2755))
	report("fchmod 4755", syscall.Fchmod(fd, 0o4755))
	report("fchmodat 2755", fchmodat(f, 0o2755))
	report("fchmodat2 4755", fchmodat2(f, 0o4755))
	report("chmod 755", syscall.Chmod(f, 0o755))
	report("io_uring_setup", ioUringSetup())

	groups, err := syscall.Getgroups()
	fmt.Printf("groups: %v %v\n", groups, err)
	pers, _, _ := syscall.RawSyscall(syscall.SYS_PERSONALITY, 0xffffffff, 0, 0)
	fmt.Printf("addr_no_randomize: %v\n", pers&0x0040000 != 0)
	var core syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_CORE, &core)
	fmt.Printf("core limit: %d\n", core.Cur)
	old := syscall.Umask(0)
	fmt.Printf("umask: %03o\n", old)
	fmt.Printf("open fds: %d\n", open)
	stdin, _ := os.Readlink("/proc/self/fd/0")
	fmt.Printf("stdin: %s\n", stdin)
	_, err = ioctlTermios(1)
	fmt.Printf("stdout is a terminal: %v\n", err == nil)
	fmt.Printf("pid: %d\n", os.Getpid())
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		for _, k := range []string{"NoNewPrivs:", "Seccomp:", "CapEff:", "CapPrm:", "CapInh:", "CapAmb:"} {
			if strings.HasPrefix(line, k) {
				fmt.Println(strings.Join(strings.Fields(line), " "))
			}
		}
	}
}

func report(what string, err error) {
	if err == nil {
		fmt.Printf("%s: ok\n", what)
		return
	}
	fmt.Printf("%s: %s\n", what, errnoName(err))
}

func errnoName(err error) string {
	switch err {
	case syscall.EPERM:
		return "EPERM"
	case syscall.ENOTSUP:
		return "ENOTSUP"
	case syscall.ENOSYS:
		return "ENOSYS"
	}
	return err.Error()
}

func cstr(s string) *byte {
	b, _ := syscall.BytePtrFromString(s)
	return b
}

func lsetxattr(f string) error {
	v := []byte("x")
	_, _, e := syscall.Syscall6(syscall.SYS_LSETXATTR, uintptr(unsafe.Pointer(cstr(f))), uintptr(unsafe.Pointer(cstr("user.test"))), uintptr(unsafe.Pointer(&v[0])), 1, 0, 0)
	return errOf(e)
}

func fsetxattr(fd int) error {
	v := []byte("x")
	_, _, e := syscall.Syscall6(syscall.SYS_FSETXATTR, uintptr(fd), uintptr(unsafe.Pointer(cstr("user.test"))), uintptr(unsafe.Pointer(&v[0])), 1, 0, 0)
	return errOf(e)
}

func fchmodat(f string, mode uint32) error {
	_, _, e := syscall.Syscall6(syscall.SYS_FCHMODAT, uintptr(0xffffff9c), uintptr(unsafe.Pointer(cstr(f))), uintptr(mode), 0, 0, 0)
	return errOf(e)
}

func fchmodat2(f string, mode uint32) error {
	const sysFchmodat2 = 452
	_, _, e := syscall.Syscall6(sysFchmodat2, uintptr(0xffffff9c), uintptr(unsafe.Pointer(cstr(f))), uintptr(mode), 0, 0, 0)
	return errOf(e)
}

func ioUringSetup() error {
	const sysIoUringSetup = 425
	var params [120]byte
	_, _, e := syscall.Syscall(sysIoUringSetup, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	return errOf(e)
}

func ioctlTermios(fd int) ([60]byte, error) {
	var t [60]byte
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&t[0])))
	return t, errOf(e)
}

func errOf(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
