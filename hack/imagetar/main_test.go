package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"redis":                       "docker.io/library/redis:latest",
		"session-redis:7.0":           "docker.io/library/session-redis:7.0",
		"me/app:1":                    "docker.io/me/app:1",
		"localhost/sessionops/x:1":    "localhost/sessionops/x:1",
		"registry.k8s.io/pause:3.10":  "registry.k8s.io/pause:3.10",
		"reg.example:5000/a/b":        "reg.example:5000/a/b:latest",
		"docker.io/library/redis:7.4": "docker.io/library/redis:7.4",
		"ghcr.io/x/y@sha256:" + hex64: "ghcr.io/x/y@sha256:" + hex64,
	} {
		got, err := normalize(in)
		if err != nil || got != want {
			t.Errorf("normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "Upper/Case:1"} {
		if _, err := normalize(bad); err == nil {
			t.Errorf("normalize(%q) accepted", bad)
		}
	}
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestLayout builds an image and checks the OCI layout: index.json names it, every blob
// matches its digest, and the layer holds the files, directories and links asked for.
func TestLayout(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "a.txt"), []byte("a"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	err := run("test/app:1", out, `["/app","--x"]`, "serve", "65532", "/work", "amd64", "linux",
		[]string{bin + ":/app:0755"}, []string{src + ":/opt/tree"}, []string{"/bin/busybox:/bin/sh"},
		[]string{"/data:0775:999:999"}, []string{"A=1"}, []string{"k=v"}, []string{"8080"})
	if err != nil {
		t.Fatal(err)
	}

	files := readTar(t, mustOpen(t, out))
	var layout struct{ ImageLayoutVersion string }
	mustJSON(t, files["oci-layout"], &layout)
	if layout.ImageLayoutVersion != "1.0.0" {
		t.Fatalf("oci-layout: %q", files["oci-layout"])
	}
	var index struct {
		Manifests []struct {
			MediaType   string
			Digest      string
			Annotations map[string]string
		}
	}
	mustJSON(t, files["index.json"], &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/test/app:1" {
		t.Fatalf("index.json: %s", files["index.json"])
	}
	for name, data := range files {
		if d, ok := cutPrefix(name, "blobs/sha256/"); ok && d != "" {
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != d {
				t.Errorf("blob %s does not match its digest", name)
			}
		}
	}
	var manifest struct {
		Config struct{ Digest string }
		Layers []struct{ MediaType, Digest string }
	}
	mustJSON(t, blob(t, files, index.Manifests[0].Digest), &manifest)
	var config struct {
		Architecture, OS string
		Config           struct {
			User, WorkingDir string
			Entrypoint, Cmd  []string
			Env              []string
		}
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	mustJSON(t, blob(t, files, manifest.Config.Digest), &config)
	if config.Config.User != "65532" || config.Config.WorkingDir != "/work" ||
		len(config.Config.Entrypoint) != 2 || config.Config.Cmd[0] != "serve" || len(config.RootFS.DiffIDs) != 1 {
		t.Fatalf("config: %+v", config)
	}
	if len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("layers: %+v", manifest.Layers)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, manifest.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	hdrs := map[string]*tar.Header{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
	}
	for name, check := range map[string]func(*tar.Header) bool{
		"app":                func(h *tar.Header) bool { return h.Mode == 0o755 && h.Typeflag == tar.TypeReg },
		"opt/":               func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir },
		"opt/tree/sub/a.txt": func(h *tar.Header) bool { return h.Mode == 0o640 },
		"opt/tree/link":      func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "sub/a.txt" },
		"bin/sh":             func(h *tar.Header) bool { return h.Linkname == "/bin/busybox" },
		"data/":              func(h *tar.Header) bool { return h.Mode == 0o775 && h.Uid == 999 && h.Gid == 999 },
	} {
		if h := hdrs[name]; h == nil || !check(h) {
			t.Errorf("layer entry %s: %+v", name, h)
		}
	}
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return s, false
}

func blob(t *testing.T, files map[string][]byte, digest string) []byte {
	t.Helper()
	d, _ := cutPrefix(digest, "sha256:")
	b, ok := files["blobs/sha256/"+d]
	if !ok {
		t.Fatalf("blob %s missing", digest)
	}
	return b
}

func mustOpen(t *testing.T, p string) io.Reader {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[h.Name] = b
		}
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
