//go:build linux

package sandbox

import "testing"

func TestLookupNetrc(t *testing.T) {
	ms := parseNetrc([]byte(`# a comment
machine example.org login alice password s3cret
machine other.org
  login bob
  account x
  password hunter2
macdef init
  machine evil.org login mallory password nope

default login anon password guest
`))
	for _, tc := range []struct {
		host, login, password string
	}{
		{"example.org", "alice", "s3cret"},
		{"other.org", "bob", "hunter2"},
		{"evil.org", "anon", "guest"}, // only inside the macro
		{"unknown.org", "anon", "guest"},
	} {
		m, ok := lookupNetrc(ms, tc.host)
		if !ok || m.login != tc.login || m.password != tc.password {
			t.Errorf("lookupNetrc(%s) = %+v, %v; want %s/%s", tc.host, m, ok, tc.login, tc.password)
		}
	}
	if m, ok := lookupNetrc(parseNetrc([]byte("machine a login b password c")), "x"); ok {
		t.Errorf("lookupNetrc without default = %+v, want none", m)
	}
}
