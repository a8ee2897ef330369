package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"regexp"
	"sort"
	"strings"
)

// layer collects an image layer's files, symlinks and the directories
// above them, written in a fixed order with fixed timestamps.
type layer struct {
	files map[string][]byte // path (no leading /) → content
	modes map[string]int64
	links map[string]string
	dirs  map[string]bool
}

func newLayer() *layer {
	l := &layer{files: map[string][]byte{}, modes: map[string]int64{}, links: map[string]string{}, dirs: map[string]bool{}}
	l.dirs["bin"] = true
	l.dirs["tmp"] = true
	return l
}

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (l *layer) parents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		l.dirs[d] = true
	}
}

// file puts the file at src (symlinks followed) at dest.
func (l *layer) file(src, dest string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	d := clean(dest)
	l.files[d] = data
	l.modes[d] = int64(st.Mode().Perm())
	l.parents(d)
	return nil
}

func (l *layer) link(dest, target string) {
	d := clean(dest)
	l.links[d] = target
	l.parents(d)
}

// lddPath matches the libraries ldd resolves ("libc.so.6 => /lib/x/libc.so.6
// (0x…)") and the loader ("/lib64/ld-linux-x86-64.so.2 (0x…)").
var lddPath = regexp.MustCompile(`(?m)^\s*(?:\S+ => )?(/\S+) \(0x`)

// sharedLibraries adds what the dynamic executable bin needs, each at
// its path on this machine (the same loader and search path then).
func (l *layer) sharedLibraries(bin string) error {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil
		}
		return fmt.Errorf("ldd %s: %v: %s", bin, err, out)
	}
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		if err := l.file(m[1], m[1]); err != nil {
			return err
		}
	}
	return nil
}

// tar writes the layer: directories, then files and symlinks, by path.
func (l *layer) tar() (*bytes.Buffer, error) {
	var buf bytes.Buffer
	t := tar.NewWriter(&buf)
	dirs := make([]string, 0, len(l.dirs))
	for d := range l.dirs {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		if err := t.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: mode}); err != nil {
			return nil, err
		}
	}
	entries := make([]string, 0, len(l.files)+len(l.links))
	for p := range l.files {
		entries = append(entries, p)
	}
	for p := range l.links {
		if _, dup := l.files[p]; !dup {
			entries = append(entries, p)
		}
	}
	sort.Strings(entries)
	for _, p := range entries {
		// A file wins over a symlink of the same path.
		if target, ok := l.links[p]; ok && l.files[p] == nil {
			if err := t.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}); err != nil {
				return nil, err
			}
			continue
		}
		data := l.files[p]
		if err := t.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: l.modes[p], Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := t.Write(data); err != nil {
			return nil, err
		}
	}
	return &buf, t.Close()
}
