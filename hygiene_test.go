// Package herald_test holds checks on the repository itself.
package herald_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// maxTrackedBytes is the largest file the repository may track: anything
// bigger is a build output, a data dump or a recording, which every clone
// would carry for ever.
const maxTrackedBytes = 1 << 20

// binaryKind names the compiled-binary format head (a file's first bytes)
// opens with, or returns "".
func binaryKind(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return "ELF"
	case bytes.HasPrefix(head, []byte{0xfe, 0xed, 0xfa, 0xce}), bytes.HasPrefix(head, []byte{0xfe, 0xed, 0xfa, 0xcf}),
		bytes.HasPrefix(head, []byte{0xce, 0xfa, 0xed, 0xfe}), bytes.HasPrefix(head, []byte{0xcf, 0xfa, 0xed, 0xfe}):
		return "Mach-O"
	case bytes.HasPrefix(head, []byte{0xca, 0xfe, 0xba, 0xbe}):
		return "Mach-O universal or Java class"
	case bytes.HasPrefix(head, []byte("\x00asm")):
		return "WebAssembly"
	case bytes.HasPrefix(head, []byte("MZ")) && len(head) >= 0x40:
		// A text file may start with "MZ"; a PE file's DOS header points,
		// at 0x3c, to its "PE\0\0" signature.
		at := int(binary.LittleEndian.Uint32(head[0x3c:]))
		if at+4 <= len(head) && string(head[at:at+4]) == "PE\x00\x00" {
			return "PE"
		}
	}
	return ""
}

// trackedProblems lists the files git tracks in the checkout at dir that
// are compiled binaries or larger than maxTrackedBytes, each with why.
func trackedProblems(dir string) ([]string, error) {
	out, err := exec.Command("git", "-C", dir, "ls-files", "-z").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	var problems []string
	for _, name := range strings.Split(string(out), "\x00") {
		if name == "" {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree; its removal is on its way
		}
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if fi.Size() > maxTrackedBytes {
			problems = append(problems, fmt.Sprintf("%s: %d bytes, over %d", name, fi.Size(), maxTrackedBytes))
		}
		head, err := readHead(path, 4096)
		if err != nil {
			return nil, err
		}
		if kind := binaryKind(head); kind != "" {
			problems = append(problems, fmt.Sprintf("%s: a compiled binary (%s)", name, kind))
		}
	}
	return problems, nil
}

func readHead(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, n)
	k, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return head[:k], nil
}

// needGit skips a test that lists tracked files when there is no git or no
// checkout to list, as when the sources came from an archive.
func needGit(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: cannot list the tracked files")
	}
	if dir != "" && exec.Command("git", "-C", dir, "rev-parse", "--is-inside-work-tree").Run() != nil {
		t.Skipf("%s is not a git checkout: no tracked files to check", dir)
	}
}

// A newcomer's clone carries no build output and no file too large to
// review: `go build` leaves binaries beside the sources, and a stray `git
// add .` commits them.
func TestTheRepositoryTracksNoCompiledBinaryAndNoFileOver1MiB(t *testing.T) {
	needGit(t, ".")
	problems, err := trackedProblems(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("tracked: %s; remove it with git rm --cached and let .gitignore keep it out", p)
	}
}

// The check finds what someone would commit by mistake, and only that: a
// real executable (this test's own), a PE and a Mach-O, a WebAssembly
// module, a file just over the limit; not one exactly at it, not a text
// that happens to start with "MZ", and not a binary left untracked.
func TestTheTrackedFilesCheckFindsBinariesAndLargeFiles(t *testing.T) {
	needGit(t, "")
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	elf, err := readHead(self, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	pe := make([]byte, 0x100)
	copy(pe, "MZ")
	binary.LittleEndian.PutUint32(pe[0x3c:], 0x80)
	copy(pe[0x80:], "PE\x00\x00")
	files := map[string][]byte{
		"server":              elf,
		"bin/herald.exe":      pe,
		"clients/lib.dylib":   {0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1},
		"web/h.wasm":          []byte("\x00asm\x01\x00\x00\x00"),
		"dump.json":           bytes.Repeat([]byte("x"), maxTrackedBytes+1),
		"exactly-1MiB.txt":    bytes.Repeat([]byte("y"), maxTrackedBytes),
		"docs/MZ.md":          []byte("MZ is where the story starts, and it goes on long enough to fill a DOS header's worth of bytes and more."),
		"README.md":           []byte("# hello\n"),
		"untracked/heraldctl": elf,
	}
	for name, b := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name := range files {
		if !strings.HasPrefix(name, "untracked/") {
			git("add", name)
		}
	}
	got, err := trackedProblems(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bin/herald.exe: a compiled binary (PE)",
		"clients/lib.dylib: a compiled binary (Mach-O)",
		fmt.Sprintf("dump.json: %d bytes, over %d", maxTrackedBytes+1, maxTrackedBytes),
		"server: a compiled binary (ELF)",
		"web/h.wasm: a compiled binary (WebAssembly)",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("found\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// The README's layout table is where a newcomer learns what each directory
// is for: every package and client directory has its row.
func TestTheREADMELayoutTableNamesEveryPackage(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(raw), "\n## Layout\n")
	if !ok {
		t.Fatal("README has no Layout section")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	named := map[string]bool{}
	for _, row := range strings.Split(table, "\n") {
		cells := strings.Split(row, "|")
		if len(cells) < 3 {
			continue
		}
		for _, span := range strings.Split(cells[1], "`")[1:] {
			named[strings.TrimSuffix(span, "/")] = true
		}
	}
	for _, parent := range []string{"cmd", "pkg", "internal", "clients"} {
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if dir := parent + "/" + e.Name(); e.IsDir() && !named[dir] {
				t.Errorf("the README's layout table has no row for %s", dir)
			}
		}
	}
}
