package daemon

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
)

// Handler runs one command line with the given standard streams and
// returns its exit status.
type Handler func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int

// Listen creates the daemon's socket at path, replacing a stale one, with
// the given permissions (0600: root only).
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, errors.New("another storefs daemon is listening on " + path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve answers connections on ln with h until ctx is done, then closes ln,
// cancels the commands still running and waits for them.
func Serve(ctx context.Context, ln net.Listener, h Handler, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			if err := serveConn(ctx, conn, h); err != nil {
				logger.Warn("daemon connection", "err", err)
			}
		}()
	}
}

// frameWriter sends what is written as frames of one type; it is shared by
// stdout and stderr, so writes are serialised.
type frameWriter struct {
	mu   *sync.Mutex
	conn net.Conn
	typ  byte
}

func (w frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for off := 0; off < len(p); off += maxFrame / 2 {
		end := min(off+maxFrame/2, len(p))
		if err := writeFrame(w.conn, w.typ, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func serveConn(ctx context.Context, conn net.Conn, h Handler) error {
	typ, payload, err := readFrame(conn)
	if err != nil {
		return err
	}
	if typ != frameRequest {
		return errors.New("daemon protocol: expected a request frame")
	}
	req, err := decodeRequest(payload)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Standard input arrives in frames; the client hanging up cancels.
	stdinR, stdinW := io.Pipe()
	go func() {
		defer cancel()
		for {
			typ, payload, err := readFrame(conn)
			if err != nil {
				stdinW.CloseWithError(io.ErrUnexpectedEOF)
				return
			}
			switch typ {
			case frameStdin:
				if _, err := stdinW.Write(payload); err != nil {
					// The command stopped reading; keep draining.
					continue
				}
			case frameStdinEOF:
				stdinW.Close()
			}
		}
	}()
	var mu sync.Mutex
	code := h(ctx, req.Args, stdinR, frameWriter{&mu, conn, frameStdout}, frameWriter{&mu, conn, frameStderr})
	stdinR.Close()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	mu.Lock()
	defer mu.Unlock()
	return writeFrame(conn, frameExit, b[:])
}
