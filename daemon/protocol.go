package daemon

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The protocol, over one connection per command:
//
//	client                                   daemon
//	  | -- frameRequest {"args": [...]} -------> |
//	  | -- frameStdin  <bytes>  (any number) --> |   the command reads them
//	  | -- frameStdinEOF ----------------------> |   as its standard input
//	  | <------------- frameStdout <bytes> ----- |
//	  | <------------- frameStderr <bytes> ----- |   (interleaved, any number)
//	  | <------------- frameExit <uint32> ------ |   then the daemon closes
//
// A frame is one type byte, a big-endian uint32 payload length and the
// payload. The client closing its side before frameExit cancels the
// command.
const (
	frameRequest  byte = 'R'
	frameStdin    byte = 'I'
	frameStdinEOF byte = 'E'
	frameStdout   byte = 'O'
	frameStderr   byte = 'e'
	frameExit     byte = 'X'
)

// maxFrame bounds a frame's payload; data is sent in chunks well below it.
const maxFrame = 1 << 20

// request is the payload of frameRequest.
type request struct {
	// Args is the command line, argv[0] included.
	Args []string `json:"args"`
}

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("daemon protocol: frame of %d bytes is larger than %d", n, maxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("daemon protocol: truncated frame: %w", err)
	}
	return hdr[0], payload, nil
}

func encodeRequest(args []string) ([]byte, error) { return json.Marshal(request{Args: args}) }

func decodeRequest(b []byte) (*request, error) {
	var r request
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("daemon protocol: bad request: %w", err)
	}
	if len(r.Args) == 0 {
		return nil, errors.New("daemon protocol: empty command line")
	}
	return &r, nil
}
