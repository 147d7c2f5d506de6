package cache_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/storefs/storefs/store"
	"github.com/storefs/storefs/store/cache"
	"github.com/storefs/storefs/store/storetest"
)

func TestServer_RoundTrip(t *testing.T) {
	ctx := context.Background()
	src, roots, nis := fixtureStore(t)
	key, _ := cache.GenerateKey("served-1", nil)
	srv := httptest.NewServer(cache.NewServer(src, &cache.ServerOptions{SecretKey: key}))
	defer srv.Close()
	c := cache.NewSignatureCheckingCache(newHTTPCache(t, srv.URL, nil), cache.PublicKeys{key.Name: key.PublicKey().Key})
	info, err := c.Info(ctx)
	if err != nil || info.StoreDir != "/nix/store" || !info.WantMassQuery || info.Priority != 30 {
		t.Errorf("Info() = %+v, %v; want /nix/store, mass query, priority 30", info, err)
	}
	dst := storetest.NewStore(t, nil)
	if err := cache.CopyFrom(ctx, dst, []cache.Cache{c}, roots, nil); err != nil {
		t.Fatalf("CopyFrom(server) = %v", err)
	}
	for p, want := range nis {
		got, err := dst.PathInfo(p)
		if err != nil {
			t.Fatalf("PathInfo(%s) = %v", p, err)
		}
		if !got.NARHash.Equal(want.NARHash) || got.CA != want.CA || got.Deriver != want.Deriver {
			t.Errorf("%s: NAR hash %s, CA %q, deriver %q; want %s, %q, %q", p, got.NARHash, got.CA, got.Deriver, want.NARHash, want.CA, want.Deriver)
		}
		// The store's own signature (Nix's) travels along with ours.
		if len(got.Signatures) != 2 {
			t.Errorf("%s: signatures %q, want Nix's and the server's", p, got.Signatures)
		}
	}
}

func TestServer_Responses(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t, nil)
	p, err := st.AddText(ctx, "hello", []byte("hello\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.PathInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(cache.NewServer(st, &cache.ServerOptions{Priority: 10}))
	defer srv.Close()
	narURL := "/nar/" + p.HashPart() + "-" + info.NARHash.Base32() + ".nar"
	narinfo := "StorePath: " + string(p) + "\nURL: " + narURL[1:] + "\nCompression: none\n" +
		"FileHash: " + info.NARHash.String() + "\nFileSize: " + strconv.FormatUint(info.NARSize, 10) + "\n" +
		"NarHash: " + info.NARHash.String() + "\nNarSize: " + strconv.FormatUint(info.NARSize, 10) + "\n" +
		"References: \nCA: " + info.CA + "\n"
	cases := []struct {
		name, method, path string
		status             int
		body               string // "" for any
		contentType        string
	}{
		{"CacheInfo", "GET", "/nix-cache-info", 200, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 10\n", "text/x-nix-cache-info"},
		{"NARInfo", "GET", "/" + p.HashPart() + ".narinfo", 200, narinfo, "text/x-nix-narinfo"},
		{"NARInfoHead", "HEAD", "/" + p.HashPart() + ".narinfo", 200, "", "text/x-nix-narinfo"},
		{"NARInfoNotValid", "GET", "/00000000000000000000000000000000.narinfo", 404, "", ""},
		{"NARInfoBadHash", "GET", "/e0000000000000000000000000000000.narinfo", 404, "", ""},
		{"NARInfoNested", "GET", "/nar/" + p.HashPart() + ".narinfo", 404, "", ""},
		{"NAR", "GET", narURL, 200, "", "application/x-nix-nar"},
		{"NARHead", "HEAD", narURL, 200, "", "application/x-nix-nar"},
		{"NAROtherHash", "GET", "/nar/" + p.HashPart() + "-" + store.HashString(store.SHA256, "x").Base32() + ".nar", 404, "", ""},
		{"NARNoHash", "GET", "/nar/" + p.HashPart() + ".nar", 404, "", ""},
		{"Post", "POST", "/nix-cache-info", 405, "", ""},
		{"Root", "GET", "/", 404, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s = %s, want %d", tc.method, tc.path, resp.Status, tc.status)
			}
			if tc.body != "" && string(body) != tc.body {
				t.Errorf("%s %s =\n%s\nwant\n%s", tc.method, tc.path, body, tc.body)
			}
			if tc.contentType != "" && resp.Header.Get("Content-Type") != tc.contentType {
				t.Errorf("Content-Type = %s, want %s", resp.Header.Get("Content-Type"), tc.contentType)
			}
			if tc.method == "HEAD" && len(body) != 0 {
				t.Errorf("HEAD returned a body of %d bytes", len(body))
			}
			if strings.HasPrefix(tc.name, "NAR") && !strings.HasPrefix(tc.name, "NARInfo") && tc.status == 200 {
				if resp.ContentLength != int64(info.NARSize) {
					t.Errorf("Content-Length = %d, want %d", resp.ContentLength, info.NARSize)
				}
				if tc.method == "GET" && !store.HashBytes(store.SHA256, body).Equal(info.NARHash) {
					t.Errorf("the NAR served does not have the path's NAR hash")
				}
			}
		})
	}
}
