//go:build linux

package sandbox

import (
	"net/http"
	"strings"
)

// netrcMachine is one entry of a netrc file; machine is "" for the
// default entry.
type netrcMachine struct {
	machine, login, password string
}

// parseNetrc reads netrc data as curl does for Nix: "machine NAME",
// "default", "login", "password" and "account" tokens; "macdef" bodies,
// which end at an empty line, and lines starting with "#" are skipped.
// Malformed data yields what could be read, as curl uses what it finds.
func parseNetrc(data []byte) []netrcMachine {
	var ms []netrcMachine
	inMacro := false
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if inMacro {
			inMacro = len(fields) > 0
			continue
		}
		if len(fields) > 0 && strings.HasPrefix(fields[0], "#") {
			continue
		}
		for i := 0; i < len(fields); i++ {
			value := ""
			if i+1 < len(fields) {
				value = fields[i+1]
			}
			switch fields[i] {
			case "machine":
				ms = append(ms, netrcMachine{machine: value})
				i++
			case "default":
				ms = append(ms, netrcMachine{})
			case "login":
				if len(ms) > 0 {
					ms[len(ms)-1].login = value
				}
				i++
			case "password":
				if len(ms) > 0 {
					ms[len(ms)-1].password = value
				}
				i++
			case "account":
				i++
			case "macdef":
				inMacro = true
				i = len(fields)
			}
		}
	}
	return ms
}

// lookupNetrc returns the entry for host: the first that names it, else
// the default entry.
func lookupNetrc(ms []netrcMachine, host string) (netrcMachine, bool) {
	for _, m := range ms {
		if m.machine == host && m.machine != "" {
			return m, true
		}
	}
	for _, m := range ms {
		if m.machine == "" {
			return m, true
		}
	}
	return netrcMachine{}, false
}

// netrcTransport adds the netrc credentials of each request's host, as
// curl does for Nix, unless the request has its own (from the URL, say).
// Each request is looked up anew, so a redirect to another host gets that
// host's credentials, never the first one's.
type netrcTransport struct {
	base     http.RoundTripper
	machines []netrcMachine
}

func (t *netrcTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") == "" {
		if m, ok := lookupNetrc(t.machines, req.URL.Hostname()); ok && m.login != "" {
			req = req.Clone(req.Context())
			req.SetBasicAuth(m.login, m.password)
		}
	}
	return t.base.RoundTrip(req)
}

var _ http.RoundTripper = (*netrcTransport)(nil)
