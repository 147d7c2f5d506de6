package sandbox

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// openPty opens the pseudo-terminal that carries the builder's stdout and
// stderr, as Nix does: many tools buffer less, or colour their output,
// only on a terminal. The slave is in raw mode, so "\n" reaches the log
// unchanged rather than as "\r\n". When owner >= 0 the slave is made
// owner's, mode 0600, like Nix does for build users.
//
// The master is pollable (reads honour deadlines and Close); the slave is a
// plain blocking descriptor to hand to the builder.
func openPty(owner int) (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening pseudoterminal master: %w", err)
	}
	defer func() {
		if err != nil {
			master.Close()
			if slave != nil {
				slave.Close()
			}
		}
	}()
	var sfd int
	var ctlErr error
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	err = rc.Control(func(fd uintptr) {
		if ctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ctlErr != nil {
			ctlErr = fmt.Errorf("unlocking pseudoterminal: %w", ctlErr)
			return
		}
		sfd, ctlErr = openPtyPeer(int(fd))
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		return nil, nil, err
	}
	slave = os.NewFile(uintptr(sfd), "pty-slave")

	t, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err != nil {
		return nil, nil, fmt.Errorf("getting pseudoterminal attributes: %w", err)
	}
	makeRaw(t)
	if err := unix.IoctlSetTermios(sfd, unix.TCSETS, t); err != nil {
		return nil, nil, fmt.Errorf("putting pseudoterminal into raw mode: %w", err)
	}
	if owner >= 0 {
		if err := unix.Fchmod(sfd, 0o600); err != nil {
			return nil, nil, fmt.Errorf("changing mode of pseudoterminal slave: %w", err)
		}
		if err := unix.Fchown(sfd, owner, 0); err != nil {
			return nil, nil, fmt.Errorf("changing owner of pseudoterminal slave: %w", err)
		}
	}
	return master, slave, nil
}

// openPtyPeer opens the slave of the master mfd: by TIOCGPTPEER (Linux
// 4.13), which needs no path lookup, or else by its /dev/pts name.
func openPtyPeer(mfd int) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno == 0 {
		return int(r), nil
	}
	if errno != unix.EINVAL && errno != unix.ENOTTY {
		return -1, fmt.Errorf("opening pseudoterminal slave: %w", errno)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		return -1, fmt.Errorf("getting pseudoterminal number: %w", err)
	}
	name := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening pseudoterminal slave %s: %w", name, err)
	}
	return fd, nil
}

// makeRaw does what cfmakeraw(3) does.
func makeRaw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
}
