package sandbox

import (
	"encoding/json"
	"errors"
	"reflect"
	"syscall"
	"testing"
)

func TestParseStatus(t *testing.T) {
	failure := encodeFailure("mounts", &mountError{errno: syscall.ENOENT})
	for _, tc := range []struct {
		name      string
		data      string
		wantReady bool
		wantStep  string
		wantErr   bool
	}{
		{"Empty", "", false, "", false},
		{"Ready", readyFrame, true, "", false},
		{"Failure", string(failure), false, "mounts", false},
		{"ReadyThenExecFailure", readyFrame + string(encodeFailure("exec builder", syscall.EACCES)), true, "exec builder", false},
		{"Garbage", "hello\n", false, "", true},
		{"Unterminated", "\x01", false, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready, f, err := parseStatus([]byte(tc.data))
			if ready != tc.wantReady || (err != nil) != tc.wantErr {
				t.Fatalf("parseStatus(%q) = %v, %+v, %v; want ready %v, error %v", tc.data, ready, f, err, tc.wantReady, tc.wantErr)
			}
			step := ""
			if f != nil {
				step = f.Step
			}
			if step != tc.wantStep {
				t.Errorf("parseStatus(%q) step = %q, want %q", tc.data, step, tc.wantStep)
			}
		})
	}
}

func TestEncodeFailure_KeepsErrno(t *testing.T) {
	_, f, err := parseStatus(encodeFailure("exec builder", &mountError{errno: syscall.ENOENT}))
	if err != nil || f == nil {
		t.Fatalf("parseStatus() = %+v, %v", f, err)
	}
	se := &SetupError{Step: f.Step, Err: &childError{msg: f.Msg, errno: syscall.Errno(f.Errno)}}
	if !errors.Is(se, syscall.ENOENT) {
		t.Errorf("%v does not unwrap to ENOENT", se)
	}
	if got, want := se.Error(), "while setting up the build environment: exec builder: mount failed: no such file or directory"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// mountError is an error wrapping an errno, like the child's.
type mountError struct{ errno syscall.Errno }

func (e *mountError) Error() string { return "mount failed: " + e.errno.Error() }
func (e *mountError) Unwrap() error { return e.errno }

func TestChildConfig_RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  childConfig
	}{
		{"Sandboxed", childConfig{
			Sandbox: &sandboxConfig{
				RootFS: rootTmpfsChild,
				Skeleton: []skelEntry{
					{Kind: skelDir, Path: "tmp", Mode: 0o1777},
					{Kind: skelFile, Path: "etc/hosts", Data: etcHosts},
					{Kind: skelSymlink, Path: "dev/fd", Data: "/proc/self/fd"},
				},
				Store:    "/tmp/nix-store-x",
				StoreDir: "/nix/store",
				Binds: []bindMount{
					{Source: "/tmp/build", Target: "/build"},
					{Source: "/store/abc-in", Target: "/nix/store/abc-in", ReadOnly: true},
				},
				DevNodes:       []string{"/dev/null", "/dev/kvm"},
				DevPts:         true,
				DevShm:         true,
				PrivateNetwork: true,
			},
			Dir: "/build", SetUser: true, UID: 1000, GID: 100, Linux32: true,
			Builder: "/nix/store/abc-in/bin/sh", Argv: []string{"sh", "-c", "echo \"é\"\n"}, Env: []string{"A=1", "B="},
		}},
		{"DiskRoot", childConfig{
			Sandbox: &sandboxConfig{RootFS: rootDisk, Root: "/tmp/chroot", Store: "/tmp/nix-store-x", StoreDir: "/nix/store"},
			Dir:     "/build", Builder: "/bin/sh", Argv: []string{"sh"},
		}},
		{"Disabled", childConfig{Dir: "/tmp/build", UID: 5, GID: 6, Builder: "/bin/sh", Argv: []string{"sh"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(&tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got childConfig
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatalf("Unmarshal(%s) = %v", data, err)
			}
			if !reflect.DeepEqual(got, tc.cfg) {
				t.Errorf("round trip of %s:\ngot  %+v\nwant %+v", data, got, tc.cfg)
			}
		})
	}
}
