package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestTheREADMEConfigurationTableListsEveryFlag keeps the README's table and
// the binary's flags the same set, each flag with its HERALD_* variable.
func TestTheREADMEConfigurationTableListsEveryFlag(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(raw), "## Configuration")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	documented := map[string]string{} // flag -> its row
	for _, row := range strings.Split(table, "\n") {
		cells := strings.Split(row, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = row
		}
	}

	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, _, _, err := parseConfigInto(fs, nil, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		row, ok := documented[f.Name]
		if !ok {
			t.Errorf("--%s is not in the README's configuration table", f.Name)
			return
		}
		if !strings.Contains(row, "`"+envName(f.Name)) {
			t.Errorf("the README row of --%s does not name %s", f.Name, envName(f.Name))
		}
		delete(documented, f.Name)
	})
	for name := range documented {
		t.Errorf("the README documents --%s, which herald does not have", name)
	}
}
