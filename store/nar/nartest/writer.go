package nartest

import "encoding/binary"

// Writer appends NAR tokens to a byte slice without checking them, so it
// writes malformed archives as readily as valid ones. The zero Writer is
// empty and ready to use; its methods return it for chaining.
type Writer struct {
	buf []byte
}

// Token appends a string token: its length as a 64-bit little-endian
// integer, its bytes and zero padding to a multiple of 8.
func (w *Writer) Token(s string) *Writer {
	w.Uint64(uint64(len(s)))
	w.buf = append(w.buf, s...)
	for len(w.buf)%8 != 0 {
		w.buf = append(w.buf, 0)
	}
	return w
}

// Tokens appends each of ss as a token.
func (w *Writer) Tokens(ss ...string) *Writer {
	for _, s := range ss {
		w.Token(s)
	}
	return w
}

// Uint64 appends v as a 64-bit little-endian integer, such as a length
// that its bytes do not follow.
func (w *Writer) Uint64(v uint64) *Writer {
	w.buf = binary.LittleEndian.AppendUint64(w.buf, v)
	return w
}

// Raw appends b as it is.
func (w *Writer) Raw(b []byte) *Writer {
	w.buf = append(w.buf, b...)
	return w
}

// Node appends the tokens of n.
func (w *Writer) Node(n Node) *Writer {
	n.write(w)
	return w
}

// Bytes returns what was written. The Writer keeps appending to the same
// array, so callers that go on writing should copy it.
func (w *Writer) Bytes() []byte { return w.buf }

// Len returns the number of bytes written.
func (w *Writer) Len() int { return len(w.buf) }
