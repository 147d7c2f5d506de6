package sandbox_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/storefs/storefs/sandbox"
)

// TestRunner_Run_RootKinds builds with the sandbox's root in each place a
// Runner may put it (a tmpfs, made by us as root or by the child
// otherwise; a directory on disk where the kernel lacks the new mount
// API): the builder must see the same tree in each, Nix 2.8's.
func TestRunner_Run_RootKinds(t *testing.T) {
	for _, kind := range sandbox.RootKinds() {
		t.Run(kind, func(t *testing.T) {
			r := newRunner(t, &sandbox.Options{KVM: true})
			sandbox.SetRootKind(r, kind)
			// The sandbox-check fixture, as TestRunner_Run_SandboxCheckFixture.
			t.Run("SandboxCheckFixture", func(t *testing.T) { checkSandboxFixture(t, r) })
			// Modes and owners as the builder sees them: root's files
			// are nobody's in the sandbox, unless we are not root, when
			// they are the build user's (ours, mapped).
			t.Run("Owners", func(t *testing.T) {
				spec := newSpec(t, "mkdir $out; stat -c '%n %a %u %g' / /tmp /etc /etc/passwd /nix /nix/store /dev /dev/fd /build > $out/r")
				runBuilderWith(t, r, spec)
				nobody, nogroup, group := "65534", "65534", "100"
				if os.Getuid() != 0 {
					nobody, nogroup = "1000", "100"
				}
				want := strings.Join([]string{
					"/ 750 " + nobody + " " + group,
					"/tmp 1777 " + nobody + " " + nogroup,
					"/etc 755 " + nobody + " " + nogroup,
					"/etc/passwd 644 " + nobody + " " + nogroup,
					"/nix 755 " + nobody + " " + nogroup,
					"/nix/store 1775 " + nobody + " " + group,
					"/dev 755 " + nobody + " " + nogroup,
					"/dev/fd 777 " + nobody + " " + nogroup,
					"/build 700 1000 100",
				}, "\n") + "\n"
				if got := readOutput(t, spec, "r"); got != want {
					t.Errorf("got:\n%s\nwant:\n%s", got, want)
				}
			})
			// /tmp, on the root, is as big as the root's filesystem: a
			// tmpfs of half the RAM, or the disk.
			t.Run("TmpSize", func(t *testing.T) {
				spec := newSpec(t, "mkdir $out; stat -f -c '%t %b %S' /tmp > $out/r")
				runBuilderWith(t, r, spec)
				f := strings.Fields(readOutput(t, spec, "r"))
				if len(f) != 3 {
					t.Fatalf("stat -f printed %q", f)
				}
				blocks, _ := strconv.ParseInt(f[1], 10, 64)
				bsize, _ := strconv.ParseInt(f[2], 10, 64)
				if kind == "disk" {
					if f[0] == "1021994" {
						t.Errorf("/tmp is on a tmpfs, want the disk")
					}
					return
				}
				if f[0] != "1021994" {
					t.Errorf("/tmp is on a filesystem of type %s, want a tmpfs (1021994)", f[0])
				}
				// The kernel rounds the half up to a page.
				if limit := memTotal(t)/2 + bsize; blocks*bsize > limit {
					t.Errorf("/tmp holds %d bytes, want at most half the RAM, %d", blocks*bsize, limit)
				}
			})
		})
	}
}

// memTotal returns the machine's RAM in bytes.
func memTotal(t testing.TB) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no MemTotal in /proc/meminfo")
	return 0
}
