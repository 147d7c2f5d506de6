package daemon

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
)

// Dial connects to a daemon's socket; an error means no daemon runs there.
func Dial(path string) (net.Conn, error) { return net.Dial("unix", path) }

// Run runs args in the daemon behind conn, forwarding stdin and writing
// its output to stdout and stderr, and returns its exit status. Cancelling
// ctx hangs up, which cancels the command in the daemon.
func Run(ctx context.Context, conn net.Conn, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	defer conn.Close()
	req, err := encodeRequest(args)
	if err != nil {
		return 1, err
	}
	if err := writeFrame(conn, frameRequest, req); err != nil {
		return 1, fmt.Errorf("sending command to the daemon: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if stdin != nil {
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					if writeFrame(conn, frameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					writeFrame(conn, frameStdinEOF, nil)
					return
				}
			}
		}()
	} else {
		writeFrame(conn, frameStdinEOF, nil)
	}
	for {
		typ, payload, err := readFrame(conn)
		if err != nil {
			if ctx.Err() != nil {
				return 1, context.Cause(ctx)
			}
			return 1, fmt.Errorf("the daemon hung up: %w", err)
		}
		switch typ {
		case frameStdout:
			if _, err := stdout.Write(payload); err != nil {
				return 1, err
			}
		case frameStderr:
			if _, err := stderr.Write(payload); err != nil {
				return 1, err
			}
		case frameExit:
			if len(payload) != 4 {
				return 1, fmt.Errorf("daemon protocol: bad exit frame")
			}
			return int(binary.BigEndian.Uint32(payload)), nil
		}
	}
}
