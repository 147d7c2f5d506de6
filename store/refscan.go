package store

// RefScanner finds which of a set of candidate hash parts occur in a byte
// stream. It is an io.Writer so that it can run in the same pass as the NAR
// dump and its hash; Nix scans the NAR serialisation the same way, which
// covers file contents, symlink targets and names alike.
//
// Any 32-byte window made only of nix-base32 digits is a candidate. Most
// bytes of binaries and text are not such digits (e, o, u and t are
// excluded), so the scanner jumps ahead by up to 32 bytes at a time and only
// looks windows up in the set inside long runs of digits.
type RefScanner struct {
	want  map[string]struct{}
	found map[string]struct{}
	// tail holds the last HashPartLen-1 bytes written, so that a hash split
	// across two writes is still found.
	tail []byte
	// joint is scratch space for tail + the start of the next write.
	joint []byte
}

// NewRefScanner returns a scanner looking for the given hash parts.
func NewRefScanner(hashParts []string) *RefScanner {
	s := &RefScanner{
		want:  make(map[string]struct{}, len(hashParts)),
		found: make(map[string]struct{}),
		tail:  make([]byte, 0, HashPartLen-1),
		joint: make([]byte, 0, 2*(HashPartLen-1)),
	}
	for _, h := range hashParts {
		s.want[h] = struct{}{}
	}
	return s
}

// Write scans p. It never fails.
func (s *RefScanner) Write(p []byte) (int, error) {
	if len(s.want) == 0 {
		return len(p), nil
	}
	if len(s.tail) > 0 {
		// Windows that straddle the previous write and this one.
		n := min(len(p), HashPartLen-1)
		s.joint = append(append(s.joint[:0], s.tail...), p[:n]...)
		s.scan(s.joint)
	}
	s.scan(p)
	// Keep the last bytes of tail+p for the next write.
	if len(p) >= HashPartLen-1 {
		s.tail = append(s.tail[:0], p[len(p)-(HashPartLen-1):]...)
	} else {
		s.tail = append(s.tail, p...)
		if over := len(s.tail) - (HashPartLen - 1); over > 0 {
			s.tail = append(s.tail[:0], s.tail[over:]...)
		}
	}
	return len(p), nil
}

func (s *RefScanner) scan(b []byte) {
	i := 0
	for i+HashPartLen <= len(b) {
		// Check the window from its end: a non-digit at j means no window
		// starting at or before j can match, so skip past it.
		j := HashPartLen - 1
		for j >= 0 && base32Index[b[i+j]] != 0xff {
			j--
		}
		if j >= 0 {
			i += j + 1
			continue
		}
		s.check(b[i : i+HashPartLen])
		// Slide through the rest of the run one byte at a time.
		for i+HashPartLen < len(b) && base32Index[b[i+HashPartLen]] != 0xff {
			i++
			s.check(b[i : i+HashPartLen])
		}
		i += HashPartLen + 1
	}
}

func (s *RefScanner) check(w []byte) {
	if _, ok := s.want[string(w)]; ok {
		s.found[string(w)] = struct{}{}
	}
}

// Found returns the hash parts seen so far.
func (s *RefScanner) Found() map[string]struct{} { return s.found }
