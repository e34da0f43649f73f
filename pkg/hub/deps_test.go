package hub_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The engine knows no transport: the WebSocket library is the HTTP
// adapter's alone, so that another transport (an event stream) plugs into
// the same hub.Socket seam and the engine's packages build without it.
func TestTheEnginesPackagesDoNotImportTheWebSocketLibrary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test lists imports with the go command: %v", err)
	}
	for _, pkg := range []string{"pkg/protocol", "pkg/ordering", "pkg/hub", "pkg/node"} {
		path := "github.com/herald-push/herald/" + pkg
		// Without -test: the imports of the package's non-test files, and
		// theirs, all the way down.
		out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", path).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", path, err, out)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			if dep == "github.com/coder/websocket" || strings.HasPrefix(dep, "github.com/coder/websocket/") {
				t.Errorf("%s imports %s (through its dependencies or directly)", pkg, dep)
				break
			}
		}
	}
}
