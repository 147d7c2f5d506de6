package nartest_test

import (
	"testing"

	"github.com/storefs/storefs/store/nar/nartest"
)

func TestCases_Names(t *testing.T) {
	// Names are subtest names and must be unique in their table.
	tables := map[string][]nartest.Case{"Valid": nartest.Valid(), "Malicious": nartest.Malicious()}
	for table, cases := range tables {
		seen := map[string]bool{}
		for _, tc := range cases {
			if tc.Name == "" || tc.Why == "" {
				t.Errorf("%s() has a case %q without a name or a reason", table, tc.Name)
			}
			if seen[tc.Name] {
				t.Errorf("%s() has two cases named %q", table, tc.Name)
			}
			seen[tc.Name] = true
		}
	}
}

func TestWriter_Token(t *testing.T) {
	var w nartest.Writer
	got := string(w.Token("").Token("(").Token("contents").Token("nix-archive-1").Bytes())
	want := "\x00\x00\x00\x00\x00\x00\x00\x00" +
		"\x01\x00\x00\x00\x00\x00\x00\x00(\x00\x00\x00\x00\x00\x00\x00" +
		"\x08\x00\x00\x00\x00\x00\x00\x00contents" +
		"\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1\x00\x00\x00"
	if got != want {
		t.Errorf("tokens = %q, want %q", got, want)
	}
}
