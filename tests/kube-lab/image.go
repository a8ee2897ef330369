package main

import (
	"archive/tar"
	"bytes"
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

// image writes an OCI image archive (an OCI layout in a tar) holding one
// static binary as /bin/NAME and its entrypoint, for `ctr images import`:
// nothing can be pulled here, so every image the lab runs is built so.
// Timestamps are fixed, so one binary always gives one digest.
func image(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("out", "", "archive to write")
	binary := fs.String("binary", "", "static binary to put in the image")
	var names, argv repeated
	fs.Var(&names, "name", "image reference (repeatable), e.g. registry.k8s.io/pause:3.10")
	fs.Var(&argv, "arg", "entrypoint argument (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *binary == "" || len(names) == 0 {
		return errors.New("--out, --binary and --name are required")
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	path := "bin/" + filepath.Base(*binary)
	var layer bytes.Buffer
	lt := tar.NewWriter(&layer)
	for _, d := range []string{"bin/", "tmp/"} {
		if err := lt.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o1777}); err != nil {
			return err
		}
	}
	if err := lt.WriteHeader(&tar.Header{Name: path, Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := lt.Write(bin); err != nil {
		return err
	}
	if err := lt.Close(); err != nil {
		return err
	}
	layerDigest := digest(layer.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config": map[string]any{
			"Entrypoint": append([]string{"/" + path}, argv...),
			"Env":        []string{"PATH=/bin"},
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config),
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
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blob(layer.Bytes()), layer.Bytes()},
		{blob(config), config},
		{blob(manifest), manifest},
	}
	for _, file := range files {
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
