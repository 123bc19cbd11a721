// Command imagetar builds a single-layer OCI image from local files and writes it as an
// OCI image layout tarball (oci-layout, index.json, blobs/sha256/...), with no container
// daemon and no registry. containerd imports the result with
//
//	ctr -n k8s.io images import IMAGE.tar
//
// (hack/local-cluster.sh load IMAGE.tar does that for the local cluster), and pods use it
// with imagePullPolicy IfNotPresent or Never. The image name is written both as
// io.containerd.image.name (the full name, normalized the way containerd's CRI normalizes
// pod image names: "redis:7" becomes "docker.io/library/redis:7") and as
// org.opencontainers.image.ref.name, so `ctr images import` stores it under the name a
// pod spec will ask for.
//
// Usage:
//
//	go run ./hack/imagetar --name NAME[:TAG] --out FILE.tar [flags]
//
// Content flags (repeatable; parent directories are created as root:root 0755):
//
//	--file SRC:DST[:MODE[:UID:GID]]   copy host file SRC (symlinks followed) to DST;
//	                                  MODE is octal, default: SRC's permission bits
//	--dir SRC:DST                     copy the tree SRC to DST (modes kept, symlinks kept
//	                                  as symlinks, owner root)
//	--symlink TARGET:LINK             make LINK a symlink to TARGET (e.g. /bin/busybox:/bin/sh)
//	--mkdir DST[:MODE[:UID:GID]]      make an empty directory (default 0755 root)
//
// Config flags:
//
//	--entrypoint ARGS   '["/manager","--flag"]' (JSON) or a space-separated list
//	--cmd ARGS          same forms
//	--user UID[:GID]    e.g. 65532
//	--workdir DIR
//	--env K=V           repeatable
//	--label K=V         repeatable
//	--expose PORT[/PROTO]  repeatable
//	--arch, --os        default: this machine's arch, linux
//
// Example (the operator image):
//
//	go run ./hack/imagetar --name session-operator:dev --out bin/images/operator.tar \
//	  --file bin/manager:/manager:0755 --user 65532:65532 --entrypoint /manager
//
// The output is reproducible: every timestamp is the Unix epoch, entries are sorted.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// entry is one file-system object of the layer.
type entry struct {
	hdr  tar.Header
	data []byte
}

type layerBuilder struct {
	entries map[string]*entry
}

var epoch = time.Unix(0, 0).UTC()

func (b *layerBuilder) put(e *entry) {
	name := strings.TrimPrefix(path.Clean("/"+e.hdr.Name), "/")
	if name == "" {
		return
	}
	e.hdr.Name = name
	if e.hdr.Typeflag == tar.TypeDir {
		e.hdr.Name += "/"
	}
	e.hdr.ModTime, e.hdr.AccessTime, e.hdr.ChangeTime = epoch, epoch, epoch
	e.hdr.Format = tar.FormatPAX
	b.parents(name)
	b.entries[name] = e
}

// parents makes every missing parent directory of name.
func (b *layerBuilder) parents(name string) {
	for dir := path.Dir(name); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if _, ok := b.entries[dir]; ok {
			continue
		}
		b.entries[dir] = &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755,
			ModTime: epoch, AccessTime: epoch, ChangeTime: epoch, Format: tar.FormatPAX}}
	}
}

func (b *layerBuilder) tarball() ([]byte, error) {
	names := make([]string, 0, len(b.entries))
	for n := range b.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := b.entries[n]
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parseOwner reads the optional trailing [MODE[:UID:GID]] fields.
func parseModeOwner(fields []string, defMode int64) (mode int64, uid, gid int, err error) {
	mode = defMode
	if len(fields) > 0 && fields[0] != "" {
		if mode, err = strconv.ParseInt(fields[0], 8, 32); err != nil {
			return 0, 0, 0, fmt.Errorf("mode %q: %w", fields[0], err)
		}
	}
	switch len(fields) {
	case 0, 1:
	case 3:
		if uid, err = strconv.Atoi(fields[1]); err != nil {
			return 0, 0, 0, fmt.Errorf("uid %q: %w", fields[1], err)
		}
		if gid, err = strconv.Atoi(fields[2]); err != nil {
			return 0, 0, 0, fmt.Errorf("gid %q: %w", fields[2], err)
		}
	default:
		return 0, 0, 0, errors.New("want MODE or MODE:UID:GID after the paths")
	}
	return mode, uid, gid, nil
}

func (b *layerBuilder) addFile(spec string) error {
	f := strings.Split(spec, ":")
	if len(f) < 2 {
		return fmt.Errorf("--file %q: want SRC:DST[:MODE[:UID:GID]]", spec)
	}
	data, err := os.ReadFile(f[0])
	if err != nil {
		return fmt.Errorf("--file %q: %w", spec, err)
	}
	st, err := os.Stat(f[0])
	if err != nil {
		return err
	}
	mode, uid, gid, err := parseModeOwner(f[2:], int64(st.Mode().Perm()))
	if err != nil {
		return fmt.Errorf("--file %q: %w", spec, err)
	}
	b.put(&entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: f[1], Mode: mode, Uid: uid, Gid: gid}, data: data})
	return nil
}

func (b *layerBuilder) addDir(spec string) error {
	src, dst, ok := strings.Cut(spec, ":")
	if !ok {
		return fmt.Errorf("--dir %q: want SRC:DST", spec)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			b.put(&entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: int64(info.Mode().Perm())}})
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			b.put(&entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}})
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.put(&entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(info.Mode().Perm())}, data: data})
		default:
			fmt.Fprintf(os.Stderr, "imagetar: skipping %s (not a file, directory or symlink)\n", p)
		}
		return nil
	})
}

func (b *layerBuilder) addSymlink(spec string) error {
	target, link, ok := strings.Cut(spec, ":")
	if !ok || target == "" || link == "" {
		return fmt.Errorf("--symlink %q: want TARGET:LINK", spec)
	}
	b.put(&entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: link, Linkname: target, Mode: 0o777}})
	return nil
}

func (b *layerBuilder) addMkdir(spec string) error {
	f := strings.Split(spec, ":")
	mode, uid, gid, err := parseModeOwner(f[1:], 0o755)
	if err != nil {
		return fmt.Errorf("--mkdir %q: %w", spec, err)
	}
	b.put(&entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: f[0], Mode: mode, Uid: uid, Gid: gid}})
	return nil
}

// args reads a JSON array or a space-separated list.
func args(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if strings.HasPrefix(v, "[") {
		var out []string
		if err := json.Unmarshal([]byte(v), &out); err != nil {
			return nil, fmt.Errorf("%q: %w", v, err)
		}
		return out, nil
	}
	return strings.Fields(v), nil
}

// normalize turns a short image name into the full form containerd's CRI looks up:
// "redis" -> "docker.io/library/redis:latest", "me/x:1" -> "docker.io/me/x:1",
// "localhost/x:1" and "registry.example:5000/x@sha256:..." stay as they are.
func normalize(ref string) (string, error) {
	if ref == "" {
		return "", errors.New("--name is required")
	}
	name, digest, _ := strings.Cut(ref, "@")
	repo, tag := name, ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo, tag = name[:i], name[i+1:]
	}
	if repo == "" || strings.ToLower(repo) != repo {
		return "", fmt.Errorf("invalid image name %q (repository must be lower case)", ref)
	}
	first, _, hasSlash := strings.Cut(repo, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		if !hasSlash {
			repo = "library/" + repo
		}
		repo = "docker.io/" + repo
	}
	out := repo
	if tag == "" && digest == "" {
		tag = "latest"
	}
	if tag != "" {
		out += ":" + tag
	}
	if digest != "" {
		out += "@" + digest
	}
	return out, nil
}

func main() {
	var files, dirs, links, mkdirs, envs, labels, ports multi
	name := flag.String("name", "", "image name, e.g. session-redis:7.0 (required)")
	out := flag.String("out", "", "output tarball (required)")
	entrypoint := flag.String("entrypoint", "", "entrypoint: JSON array or space-separated")
	cmd := flag.String("cmd", "", "cmd: JSON array or space-separated")
	user := flag.String("user", "", "user (uid[:gid])")
	workdir := flag.String("workdir", "", "working directory")
	arch := flag.String("arch", runtime.GOARCH, "architecture")
	osName := flag.String("os", "linux", "operating system")
	flag.Var(&files, "file", "SRC:DST[:MODE[:UID:GID]] (repeatable)")
	flag.Var(&dirs, "dir", "SRC:DST (repeatable)")
	flag.Var(&links, "symlink", "TARGET:LINK (repeatable)")
	flag.Var(&mkdirs, "mkdir", "DST[:MODE[:UID:GID]] (repeatable)")
	flag.Var(&envs, "env", "K=V (repeatable)")
	flag.Var(&labels, "label", "K=V (repeatable)")
	flag.Var(&ports, "expose", "PORT[/PROTO] (repeatable)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: imagetar --name NAME[:TAG] --out FILE.tar [--file SRC:DST[:MODE]]... [flags]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *name == "" || *out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*name, *out, *entrypoint, *cmd, *user, *workdir, *arch, *osName,
		files, dirs, links, mkdirs, envs, labels, ports); err != nil {
		fmt.Fprintln(os.Stderr, "imagetar:", err)
		os.Exit(1)
	}
}

func run(name, out, entrypoint, cmd, user, workdir, arch, osName string,
	files, dirs, links, mkdirs, envs, labels, ports []string) error {
	full, err := normalize(name)
	if err != nil {
		return err
	}
	b := &layerBuilder{entries: map[string]*entry{}}
	for _, d := range dirs {
		if err := b.addDir(d); err != nil {
			return err
		}
	}
	for _, d := range mkdirs {
		if err := b.addMkdir(d); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := b.addFile(f); err != nil {
			return err
		}
	}
	for _, l := range links {
		if err := b.addSymlink(l); err != nil {
			return err
		}
	}
	layerTar, err := b.tarball()
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return err
	}

	cfg := v1.Config{User: user, WorkingDir: workdir, Env: envs}
	if cfg.Entrypoint, err = args(entrypoint); err != nil {
		return fmt.Errorf("--entrypoint: %w", err)
	}
	if cfg.Cmd, err = args(cmd); err != nil {
		return fmt.Errorf("--cmd: %w", err)
	}
	if len(labels) > 0 {
		cfg.Labels = map[string]string{}
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			cfg.Labels[k] = v
		}
	}
	if len(ports) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range ports {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	if !hasEnv(envs, "PATH") {
		cfg.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, cfg.Env...)
	}

	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	cf, err := base.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = arch, osName
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	img, err := mutate.ConfigFile(base, cf)
	if err != nil {
		return err
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "imagetar", Comment: "files"}})
	if err != nil {
		return err
	}
	return writeLayout(out, full, img)
}

func hasEnv(envs []string, key string) bool {
	for _, e := range envs {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// writeLayout writes img as an OCI image layout tarball naming it full.
func writeLayout(out, full string, img v1.Image) error {
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	mdigest, err := img.Digest()
	if err != nil {
		return err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cdigest, err := img.ConfigName()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Size:      int64(len(manifest)),
			Digest:    mdigest,
			Platform:  &v1.Platform{Architecture: cf.Architecture, OS: cf.OS},
			Annotations: map[string]string{
				"io.containerd.image.name":          full,
				"org.opencontainers.image.ref.name": full,
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	write := func(name string, data []byte) error {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch})
	}
	if err := write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := write("index.json", indexJSON); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := write("blobs/sha256/"+d.Hex, data); err != nil {
			return err
		}
	}
	if err := write("blobs/sha256/"+cdigest.Hex, config); err != nil {
		return err
	}
	if err := write("blobs/sha256/"+mdigest.Hex, manifest); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "imagetar: wrote %s (%s, %s)\n", out, full, mdigest)
	return nil
}
