package cache

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/nar"
)

// defaultServerPriority is the Priority a served store announces: 30, as
// nix-serve does, ahead of cache.nixos.org (40), since a store nearby is
// faster.
const defaultServerPriority = 30

// ServerOptions configure NewServer. A nil *ServerOptions means all
// defaults.
type ServerOptions struct {
	// Priority is announced in nix-cache-info. Zero means 30, as
	// nix-serve.
	Priority int
	// SecretKey signs every narinfo served, besides the signatures the
	// store has. Nil means none.
	SecretKey *SecretKey
	// Logger gets an error when a NAR cannot be served to the end. Nil
	// discards them.
	Logger *slog.Logger
}

// server serves a store as a binary cache.
type server struct {
	st       *store.Store
	priority int
	key      *SecretKey
	logger   *slog.Logger
}

// NewServer returns a handler that serves st as a binary cache, as
// nix-serve does, for GET and HEAD:
//
//   - /nix-cache-info: the store directory, WantMassQuery, Priority;
//   - /<hash part>.narinfo: the narinfo of a valid path (404 otherwise),
//     with Compression: none and URL nar/<hash part>-<NAR hash>.nar,
//     signed with opts.SecretKey if given;
//   - /nar/<hash part>-<NAR hash>.nar: the NAR, uncompressed, dumped from
//     the store as it streams out, with its Content-Length; 404 if the
//     path is not valid or its NAR hash is another.
//
// NARs are served uncompressed: compressing as they stream would leave
// FileHash unknown, and on a local network the bytes saved cost more CPU
// than they are worth. The handler holds no state of its own between
// requests.
func NewServer(st *store.Store, opts *ServerOptions) http.Handler {
	s := &server{st: st, priority: defaultServerPriority}
	if opts != nil {
		if opts.Priority != 0 {
			s.priority = opts.Priority
		}
		s.key = opts.SecretKey
		s.logger = opts.Logger
	}
	if s.logger == nil {
		s.logger = discardLogger()
	}
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case p == "/"+infoFile:
		info := &Info{StoreDir: s.st.Dir, WantMassQuery: true, Priority: s.priority}
		s.text(w, r, "text/x-nix-cache-info", info.String())
	case strings.HasSuffix(p, ".narinfo") && strings.LastIndexByte(p, '/') == 0:
		s.narInfo(w, r, strings.TrimSuffix(p[1:], ".narinfo"))
	case strings.HasPrefix(p, "/"+narDir+"/") && strings.HasSuffix(p, ".nar"):
		s.nar(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/"+narDir+"/"), ".nar"))
	default:
		http.NotFound(w, r)
	}
}

// text writes a small text response.
func (s *server) text(w http.ResponseWriter, r *http.Request, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodGet {
		w.Write([]byte(body))
	}
}

// lookup returns the valid path with the given hash part, or writes an
// error response and returns nil.
func (s *server) lookup(w http.ResponseWriter, r *http.Request, hashPart string) *store.PathInfo {
	if checkHashPart(hashPart) != nil {
		http.NotFound(w, r)
		return nil
	}
	p, err := s.st.PathFromHashPart(hashPart)
	if errors.Is(err, store.ErrNotValid) {
		http.NotFound(w, r)
		return nil
	}
	var info *store.PathInfo
	if err == nil {
		info, err = s.st.PathInfo(p)
	}
	if errors.Is(err, store.ErrNotValid) {
		// Deleted since the lookup.
		http.NotFound(w, r)
		return nil
	}
	if err != nil {
		s.logger.Error("querying path", "hash_part", hashPart, "err", err)
		http.Error(w, "querying the store failed", http.StatusInternalServerError)
		return nil
	}
	return info
}

func (s *server) narInfo(w http.ResponseWriter, r *http.Request, hashPart string) {
	info := s.lookup(w, r, hashPart)
	if info == nil {
		return
	}
	ni := &NARInfo{
		StorePath:   info.Path,
		URL:         narURL(info),
		Compression: CompressionNone,
		FileHash:    info.NARHash,
		FileSize:    info.NARSize,
		NARHash:     info.NARHash,
		NARSize:     info.NARSize,
		References:  info.References,
		Deriver:     info.Deriver,
		Sigs:        info.Signatures,
		CA:          info.CA,
	}
	if s.key != nil {
		ni.Sign(s.key)
	}
	s.text(w, r, "text/x-nix-narinfo", ni.String())
}

// narURL is where the server serves a path's NAR. The NAR hash in the
// name makes a URL stand for one content, so that a path deleted and
// made again differently between a client's two requests gives a 404
// rather than another NAR.
func narURL(info *store.PathInfo) string {
	return narDir + "/" + info.Path.HashPart() + "-" + info.NARHash.Base32() + ".nar"
}

func (s *server) nar(w http.ResponseWriter, r *http.Request, name string) {
	hashPart, narHash, _ := strings.Cut(name, "-")
	info := s.lookup(w, r, hashPart)
	if info == nil {
		return
	}
	if info.NARHash.Base32() != narHash {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/x-nix-nar")
	w.Header().Set("Content-Length", strconv.FormatUint(info.NARSize, 10))
	if r.Method == http.MethodHead {
		return
	}
	if err := nar.Dump(w, s.st.RealPath(info.Path)); err != nil {
		// The status is sent; the client sees a body shorter than its
		// Content-Length, and the NAR hash check catches anything else.
		if r.Context().Err() != nil {
			s.logger.Debug("client went away", "path", info.Path, "err", err)
			return
		}
		s.logger.Error("serving NAR", "path", info.Path, "err", err)
	}
}
