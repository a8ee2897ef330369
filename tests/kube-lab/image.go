package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(s string) error { *r = append(*r, s); return nil }

// image writes an OCI image archive (an OCI layout in a tar) for `ctr
// images import`: nothing can be pulled here, so every image the lab runs
// is built so. In its simple form it holds one static binary as /bin/NAME,
// its entrypoint; the e2e images (agnhost, busybox) are made of several
// files of this machine (--file, with the shared libraries ldd names when
// --libs is given) and symlinks (--link). Timestamps are fixed, so the same
// files always give the same digest.
func image(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("out", "", "archive to write")
	binary := fs.String("binary", "", "static binary to put in the image as /bin/NAME, its entrypoint")
	libs := fs.Bool("libs", false, "add the shared libraries (and loader) ldd names for each --file")
	var names, argv, files, links, entry, env repeated
	fs.Var(&names, "name", "image reference (repeatable), e.g. registry.k8s.io/pause:3.10")
	fs.Var(&argv, "arg", "argument (repeatable): of --binary's entrypoint, else the image's Cmd")
	fs.Var(&files, "file", "SRC:DEST, a file of this machine at DEST in the image (repeatable)")
	fs.Var(&links, "link", "DEST:TARGET, a symlink (repeatable)")
	fs.Var(&entry, "entrypoint", "entrypoint word (repeatable) of an image of --files")
	fs.Var(&env, "env", "KEY=VALUE (repeatable; default PATH=/bin)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || (*binary == "" && len(files) == 0) || len(names) == 0 {
		return errors.New("--out, --name and --binary or --file are required")
	}
	l := newLayer()
	config := map[string]any{"Env": []string{"PATH=/bin"}}
	if len(env) > 0 {
		config["Env"] = []string(env)
	}
	if *binary != "" {
		path := "/bin/" + filepath.Base(*binary)
		if err := l.file(*binary, path); err != nil {
			return err
		}
		config["Entrypoint"] = append([]string{path}, argv...)
	}
	for _, f := range files {
		src, dest, ok := strings.Cut(f, ":")
		if !ok {
			return fmt.Errorf("--file %q: want SRC:DEST", f)
		}
		if err := l.file(src, dest); err != nil {
			return err
		}
		if *libs {
			if err := l.sharedLibraries(src); err != nil {
				return err
			}
		}
	}
	for _, k := range links {
		dest, target, ok := strings.Cut(k, ":")
		if !ok {
			return fmt.Errorf("--link %q: want DEST:TARGET", k)
		}
		l.link(dest, target)
	}
	if *binary == "" {
		if len(entry) > 0 {
			config["Entrypoint"] = []string(entry)
		}
		if len(argv) > 0 {
			config["Cmd"] = []string(argv)
		}
	}
	layer, err := l.tar()
	if err != nil {
		return err
	}
	layerDigest := digest(layer.Bytes())
	configJSON, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       config,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", configJSON),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar", layer.Bytes())},
	})
	if err != nil {
		return err
	}
	var manifests []any
	for _, n := range names {
		d := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
		d["annotations"] = map[string]string{
			"io.containerd.image.name":          n,
			"org.opencontainers.image.ref.name": n[strings.LastIndex(n, ":")+1:],
		}
		manifests = append(manifests, d)
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     manifests,
	})
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer f.Close()
	t := tar.NewWriter(f)
	blobs := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blob(layer.Bytes()), layer.Bytes()},
		{blob(configJSON), configJSON},
		{blob(manifest), manifest},
	}
	for _, file := range blobs {
		if err := t.WriteHeader(&tar.Header{Name: file.name, Mode: 0o644, Size: int64(len(file.data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := t.Write(file.data); err != nil {
			return err
		}
	}
	if err := t.Close(); err != nil {
		return err
	}
	fmt.Println(digest(manifest))
	return nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blob(b []byte) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:")
}

func descriptor(mediaType string, b []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digest(b), "size": len(b)}
}
