package unity_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Git-installed packages are read-only: an asset without a committed .meta
// is ignored by Unity, and a GUID that changes breaks every reference to
// it. Every file and folder Unity imports (all but "~" folders) has a .meta
// with a GUID of its own and the importer its kind needs; no .meta is left
// without its asset.
func TestEveryPackageAssetHasAStableMeta(t *testing.T) {
	root := ".."
	guidLine := regexp.MustCompile(`(?m)^guid: ([0-9a-f]{32})$`)
	importers := map[string]string{".cs": "MonoImporter:", ".asmdef": "AssemblyDefinitionImporter:",
		".md": "TextScriptImporter:", "package.json": "PackageManifestImporter:", "": "folderAsset: yes",
		".jslib": "PluginImporter:"}
	// A .jslib is linked into WebGL builds only: enabled for any other
	// platform (or the Editor) it fails their builds.
	webglOnly := regexp.MustCompile(`(?s)Any: *\n *second:\n *enabled: 0.*Editor: Editor\n *second:\n *enabled: 0.*WebGL: WebGL\n *second:\n *enabled: 1`)
	seen := map[string]string{}
	assets := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path == root {
			return nil
		}
		if d.IsDir() && (strings.HasSuffix(name, "~") || strings.HasPrefix(name, ".")) {
			return filepath.SkipDir // Unity does not import these
		}
		if strings.HasSuffix(name, ".meta") {
			if _, err := os.Stat(strings.TrimSuffix(path, ".meta")); err != nil {
				t.Errorf("%s has no asset", path)
			}
			return nil
		}
		assets++
		meta, err := os.ReadFile(path + ".meta")
		if err != nil {
			t.Errorf("%s has no .meta", path)
			return nil
		}
		m := guidLine.FindSubmatch(meta)
		if m == nil {
			t.Errorf("%s.meta has no guid", path)
			return nil
		}
		if other, dup := seen[string(m[1])]; dup {
			t.Errorf("%s and %s share guid %s", path, other, m[1])
		}
		seen[string(m[1])] = path
		kind := filepath.Ext(name)
		if name == "package.json" {
			kind = name
		} else if d.IsDir() {
			kind = ""
		}
		want, known := importers[kind]
		if !known {
			t.Errorf("%s: no importer known for this kind of file", path)
		} else if !strings.Contains(string(meta), want) {
			t.Errorf("%s.meta lacks %q", path, want)
		} else if kind == ".jslib" && !webglOnly.Match(meta) {
			t.Errorf("%s.meta: the plugin must be enabled for WebGL only (Any: 0, Editor: 0, WebGL: 1)", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if assets < 10 {
		t.Fatalf("only %d assets found", assets)
	}
}

// The manifest is what the Package Manager reads when a developer adds
// https://github.com/herald-push/herald.git?path=/clients/unity#<commit>.
func TestThePackageManifestNamesThePackageAndItsSamples(t *testing.T) {
	raw, err := os.ReadFile("../package.json")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Name, Version, Unity, DisplayName string
		Samples                           []struct{ DisplayName, Path string }
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Name != "com.herald-push.herald" || m.Unity != "2021.2" || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(m.Version) {
		t.Fatalf("manifest %+v", m)
	}
	if len(m.Samples) < 2 {
		t.Fatalf("samples: %+v", m.Samples)
	}
	for _, s := range m.Samples {
		if st, err := os.Stat(filepath.Join("..", s.Path)); err != nil || !st.IsDir() || !strings.HasPrefix(s.Path, "Samples~/") {
			t.Errorf("sample %q at %s: %v", s.DisplayName, s.Path, err)
		}
	}
	var asmdef struct{ Name string }
	raw, err = os.ReadFile("../Runtime/Herald.asmdef")
	if err != nil || json.Unmarshal(raw, &asmdef) != nil || asmdef.Name != "Herald" {
		t.Fatalf("Runtime/Herald.asmdef: %s %v", raw, err)
	}
}

// A studio's legal review asks of every package what it may do with it: the
// Package Manager shows package.json's licence, and expects its text in
// LICENSE.md beside it; both must say what the repository's LICENSE says.
func TestThePackageCarriesTheRepositorysLicence(t *testing.T) {
	var m struct{ License string }
	raw, err := os.ReadFile("../package.json")
	if err != nil || json.Unmarshal(raw, &m) != nil {
		t.Fatalf("package.json: %v", err)
	}
	if m.License != "Apache-2.0" {
		t.Errorf(`package.json "license" = %q, want the SPDX id "Apache-2.0"`, m.License)
	}
	root, err := os.ReadFile("../../../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := os.ReadFile("../LICENSE.md")
	if err != nil {
		t.Fatalf("the package has no LICENSE.md: %v", err)
	}
	if string(pkg) != string(root) {
		t.Error("LICENSE.md differs from the repository's LICENSE")
	}
	if !strings.Contains(string(root), "Apache License") || !strings.Contains(string(root), "Version 2.0") {
		t.Error("LICENSE is not the Apache License 2.0")
	}
}
