package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storefs/storefs/daemon"
)

// serve runs a daemon with h on a socket in a temporary directory until
// the test ends.
func serve(t *testing.T, h daemon.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "daemon.sock")
	ln, err := daemon.Listen(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Serve(ctx, ln, h, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return sock
}

func run(t *testing.T, sock string, ctx context.Context, args []string, stdin io.Reader) (string, string, int, error) {
	t.Helper()
	conn, err := daemon.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code, err := daemon.Run(ctx, conn, args, stdin, &out, &errb)
	return out.String(), errb.String(), code, err
}

// TestDaemon_Streams: the command line, standard input, both outputs and
// the exit status cross the socket, also in large amounts.
func TestDaemon_Streams(t *testing.T) {
	sock := serve(t, func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		in, _ := io.ReadAll(stdin)
		fmt.Fprintf(stdout, "%s|%d", strings.Join(args, " "), len(in))
		fmt.Fprint(stderr, "warning: something")
		return 42
	})
	big := strings.Repeat("x", 3<<20)
	out, errOut, code, err := run(t, sock, context.Background(), []string{"storefs", "add", "--text", "t"}, strings.NewReader(big))
	if err != nil || code != 42 || out != fmt.Sprintf("storefs add --text t|%d", len(big)) || errOut != "warning: something" {
		t.Errorf("Run = %q %q %d %v", out, errOut, code, err)
	}
}

// TestDaemon_HangUpCancels: a client that goes away cancels its command.
func TestDaemon_HangUpCancels(t *testing.T) {
	cancelled := make(chan struct{})
	sock := serve(t, func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
		fmt.Fprintln(stdout, "started")
		<-ctx.Done()
		close(cancelled)
		return 1
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	if _, _, _, err := run(t, sock, ctx, []string{"storefs", "realise"}, nil); err == nil {
		t.Errorf("Run after cancel = nil error")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the command was not cancelled when the client hung up")
	}
}

// TestDaemon_ListenRefusesLiveSocket: a second daemon does not steal a
// live daemon's socket.
func TestDaemon_ListenRefusesLiveSocket(t *testing.T) {
	sock := serve(t, func(context.Context, []string, io.Reader, io.Writer, io.Writer) int { return 0 })
	if ln, err := daemon.Listen(sock, 0o600); err == nil {
		ln.Close()
		t.Fatal("Listen on a live daemon's socket succeeded")
	}
}
