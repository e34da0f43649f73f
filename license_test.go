package herald_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// apacheSHA256 is the SHA-256 of the Apache License 2.0 as the Apache
// Software Foundation publishes it (https://www.apache.org/licenses/LICENSE-2.0.txt).
const apacheSHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"

// The repository's LICENSE is the Apache License 2.0, word for word, with
// herald's copyright line in its appendix; the API document and the
// JavaScript package name it by its SPDX identifier, so that tools reading
// either (an OpenAPI validator, npm) find the same license.
func TestTheLicenseIsApache2AndNamedSoEverywhere(t *testing.T) {
	raw, err := os.ReadFile("LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	const copyright = "   Copyright 2026 The herald authors\n"
	if !strings.Contains(string(raw), copyright) {
		t.Fatalf("LICENSE has no line %q", copyright)
	}
	standard := strings.Replace(string(raw), copyright, "   Copyright [yyyy] [name of copyright owner]\n", 1)
	if sum := sha256.Sum256([]byte(standard)); hex.EncodeToString(sum[:]) != apacheSHA256 {
		t.Error("LICENSE, its copyright line put back to the template's, is not the Apache License 2.0 text")
	}

	var api struct {
		Info struct {
			License map[string]string `json:"license"`
		} `json:"info"`
	}
	readJSON(t, "pkg/httpapi/openapi.json", &api)
	if l := api.Info.License; l["identifier"] != "Apache-2.0" || l["name"] != "Apache-2.0" || l["url"] != "" {
		t.Errorf("openapi.json's license is %v, want name and SPDX identifier Apache-2.0 (and no url: OpenAPI 3.1 allows one of the two)", l)
	}
	var js struct {
		License string `json:"license"`
	}
	readJSON(t, "clients/js/package.json", &js)
	if js.License != "Apache-2.0" {
		t.Errorf("clients/js/package.json's license is %q, want Apache-2.0", js.License)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
