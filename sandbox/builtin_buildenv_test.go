//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// envTree makes packages in a temporary directory, which it returns, from
// files: each key is "<package>/<path>" and its value the file's contents,
// or "-> target" for a symlink; "<root>" in values stands for the
// directory.
func envTree(t testing.TB, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, v := range files {
		v = strings.ReplaceAll(v, "<root>", root)
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(v, "-> "); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// runBuildenv runs buildenv over packages of root given as "active
// priority name…" groups (names relative to root) and returns $out, the
// log and the error.
func runBuildenv(t testing.TB, root string, groups ...string) (out, log string, err error) {
	t.Helper()
	var list []string
	for _, g := range groups {
		f := strings.Fields(g)
		list = append(list, f[0], f[1], fmt.Sprint(len(f)-2))
		for _, name := range f[2:] {
			list = append(list, filepath.Join(root, name))
		}
	}
	out = filepath.Join(root, "out")
	var b strings.Builder
	err = buildenv(map[string]string{
		"out":         out,
		"derivations": strings.Join(list, " "),
		"manifest":    "/nix/store/manifest",
	}, &b)
	return out, b.String(), err
}

// envLinks describes out: "path -> target" for each symlink (targets
// relative to root), "path/" for each real directory.
func envLinks(t testing.TB, root, out string) []string {
	t.Helper()
	var got []string
	err := filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == out {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if r, err := filepath.Rel(root, target); err == nil && !strings.HasPrefix(r, "..") {
				target = r
			}
			got = append(got, rel+" -> "+target)
		case fi.IsDir():
			got = append(got, rel+"/")
		default:
			got = append(got, rel+" (file)")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

func TestBuildenv(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  map[string]string
		groups []string
		want   []string // envLinks of out
		log    string   // the warnings, with <root> for the packages' directory
	}{
		{
			// Disjoint packages: one link per top-level entry.
			name:   "Disjoint",
			files:  map[string]string{"a/bin/a": "a", "b/share/b": "b"},
			groups: []string{"true 5 a", "true 5 b"},
			want:   []string{"bin -> a/bin", "manifest.nix -> /nix/store/manifest", "share -> b/share"},
		},
		{
			// Two packages with bin: the link to a's becomes a directory
			// holding both; lib stays a link.
			name:   "DirectoryMerging",
			files:  map[string]string{"a/bin/a": "a", "a/lib/x/liba": "a", "b/bin/b": "b"},
			groups: []string{"true 5 a", "true 5 b"},
			want:   []string{"bin/", "bin/a -> a/bin/a", "bin/b -> b/bin/b", "lib -> a/lib", "manifest.nix -> /nix/store/manifest"},
		},
		{
			// Merging recurses: share/doc/{a,b} below a merged share/doc.
			name:   "DeepMerging",
			files:  map[string]string{"a/share/doc/a/README": "a", "b/share/doc/b/README": "b", "c/share/man/c.1": "c"},
			groups: []string{"true 5 a b c"},
			want: []string{"manifest.nix -> /nix/store/manifest", "share/", "share/doc/", "share/doc/a -> a/share/doc/a",
				"share/doc/b -> b/share/doc/b", "share/man -> c/share/man"},
		},
		{
			// The lower priority number wins, whichever comes first in
			// the list: hi is linked first, and lo's bin/x is left out
			// of the merged bin.
			name:   "PriorityWins",
			files:  map[string]string{"lo/bin/x": "lo", "hi/bin/x": "hi", "hi/bin/y": "hi", "lo/bin/z": "lo"},
			groups: []string{"true 8 lo", "true 3 hi"},
			want:   []string{"bin/", "bin/x -> hi/bin/x", "bin/y -> hi/bin/y", "bin/z -> lo/bin/z", "manifest.nix -> /nix/store/manifest"},
		},
		{
			// A package path that is a file is left out, with Nix's
			// warning.
			name:   "NotADirectory",
			files:  map[string]string{"a/bin/a": "a", "f": "a file"},
			groups: []string{"true 5 a f"},
			want:   []string{"bin -> a/bin", "manifest.nix -> /nix/store/manifest"},
			log:    "warning: not including '<root>/f' in the user environment because it's not a directory\n",
		},
		{
			// An inactive package is not linked.
			name:   "Inactive",
			files:  map[string]string{"a/bin/a": "a", "b/bin/b": "b"},
			groups: []string{"true 5 a", "false 5 b"},
			want:   []string{"bin -> a/bin", "manifest.nix -> /nix/store/manifest"},
		},
		{
			// Propagated packages come after, with priorities from 1000:
			// p loses bin/x to a (5), but adds bin/p; nix-support is
			// never linked.
			name: "Propagated",
			files: map[string]string{
				"a/bin/x": "a", "a/nix-support/propagated-user-env-packages": "<root>/p\n",
				"p/bin/x": "p", "p/bin/p": "p", "p/nix-support/propagated-user-env-packages": "<root>/q",
				"q/share/q": "q",
			},
			groups: []string{"true 5 a"},
			want:   []string{"bin/", "bin/p -> p/bin/p", "bin/x -> a/bin/x", "manifest.nix -> /nix/store/manifest", "share -> q/share"},
		},
		{
			// Two propagated packages colliding: the first in path
			// order gets 1000 and wins over 1001.
			name: "PropagatedOrder",
			files: map[string]string{
				"a/nix-support/propagated-user-env-packages": "<root>/p2 <root>/p1",
				"p1/bin/x": "p1", "p2/bin/x": "p2", "p2/bin/y": "p2",
			},
			groups: []string{"true 5 a"},
			want:   []string{"bin/", "bin/x -> p1/bin/x", "bin/y -> p2/bin/y", "manifest.nix -> /nix/store/manifest"},
		},
		{
			// Files never linked, and dotfiles.
			name: "Skipped",
			files: map[string]string{
				"a/bin/a": "a", "a/lib/perl5/perllocal.pod": "x", "a/share/info/dir": "x", "a/share/info/a.info": "a",
				"a/log": "x", "a/manifest.nix": "x", "a/manifest.json": "x", "a/propagated-build-inputs": "x", "a/.hidden": "x",
				"a/lib/perl5/A.pm": "a", "b/lib/perl5/perllocal.pod": "y", "b/share/info/dir": "y", "b/share/info/b.info": "b",
			},
			groups: []string{"true 5 a b"},
			want: []string{"bin -> a/bin", "lib/", "lib/perl5/", "lib/perl5/A.pm -> a/lib/perl5/A.pm", "manifest.nix -> /nix/store/manifest",
				"share/", "share/info/", "share/info/a.info -> a/share/info/a.info", "share/info/b.info -> b/share/info/b.info"},
		},
		{
			// A dangling symlink is skipped with Nix's warning, which
			// names the link that would have been made.
			name:   "DanglingSymlink",
			files:  map[string]string{"a/bin/a": "a", "a/broken": "-> /nonexistent/x"},
			groups: []string{"true 5 a"},
			want:   []string{"bin -> a/bin", "manifest.nix -> /nix/store/manifest"},
			log:    "warning: skipping dangling symlink '<root>/out/broken'\n",
		},
		{
			// A symlink to a directory counts as that directory.
			name:   "SymlinkedDirectory",
			files:  map[string]string{"a/bin/a": "a", "b/real/b": "b", "b/bin": "-> real"},
			groups: []string{"true 5 a b"},
			want:   []string{"bin/", "bin/a -> a/bin/a", "bin/b -> b/bin/b", "manifest.nix -> /nix/store/manifest", "real -> b/real"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := envTree(t, tc.files)
			out, log, err := runBuildenv(t, root, tc.groups...)
			if err != nil {
				t.Fatalf("buildenv() = %v, want nil", err)
			}
			sort.Strings(tc.want)
			if got := envLinks(t, root, out); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("out =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if want := strings.ReplaceAll(tc.log, "<root>", root); log != want {
				t.Errorf("log = %q, want %q", log, want)
			}
		})
	}
}

// TestBuildenv_Collision checks Nix 2.8's three collision messages.
func TestBuildenv_Collision(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  map[string]string
		groups []string
		want   string // with <root>
	}{
		{
			name:   "SamePriority",
			files:  map[string]string{"a/bin/x": "a", "b/bin/x": "b"},
			groups: []string{"true 5 a", "true 5 b"},
			want: "packages '<root>/b/bin/x' and '<root>/a/bin/x' have the same priority 5; " +
				"use 'nix-env --set-flag priority NUMBER INSTALLED_PKGNAME' to change the priority " +
				"of one of the conflicting packages (0 being the highest priority)",
		},
		{
			// a's bin is a file, b's a directory.
			name:   "DirectoryOverFile",
			files:  map[string]string{"a/bin": "a", "b/bin/b": "b"},
			groups: []string{"true 5 a b"},
			want:   "collision between '<root>/b/bin' and non-directory '<root>/a/bin'",
		},
		{
			// a and b make share a real directory; c brings a file.
			name:   "FileOverDirectory",
			files:  map[string]string{"a/share/a": "a", "b/share/b": "b", "c/share": "c"},
			groups: []string{"true 5 a b c"},
			want:   "collision between non-directory '<root>/c/share' and directory '<root>/out/share'",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := envTree(t, tc.files)
			_, _, err := runBuildenv(t, root, tc.groups...)
			want := strings.ReplaceAll(tc.want, "<root>", root)
			if err == nil || err.Error() != want {
				t.Errorf("buildenv() = %v, want %q", err, want)
			}
		})
	}
}

func TestBuildenv_BadAttributes(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"NoOut", map[string]string{"derivations": "", "manifest": "m"}, "attribute 'out' missing"},
		{"NoDerivations", map[string]string{"out": "/x", "manifest": "m"}, "attribute 'derivations' missing"},
		{"NoManifest", map[string]string{"out": "/x", "derivations": ""}, "attribute 'manifest' missing"},
		{"Truncated", map[string]string{"out": "/x", "derivations": "true 5", "manifest": "m"}, "incomplete package"},
		{"BadPriority", map[string]string{"out": "/x", "derivations": "true high 1 /p", "manifest": "m"}, "invalid priority 'high'"},
		{"TooFewOutputs", map[string]string{"out": "/x", "derivations": "true 5 3 /p", "manifest": "m"}, "invalid number of outputs '3'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := buildenv(tc.env, &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("buildenv() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
