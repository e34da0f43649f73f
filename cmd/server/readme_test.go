package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTheREADMEConfigurationTableListsEveryFlag keeps the README's table and
// the binary's flags the same set, each flag with its HERALD_* variable and
// its default (from node.DefaultConfig or httpapi.DefaultConfig).
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
	if _, err := parseConfigInto(fs, nil, func(string) string { return "" }); err != nil {
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
		if readme, actual := documentedDefault(row, f.Name), flagDefault(f); !sameDefault(readme, actual) {
			t.Errorf("the README gives --%s the default %q; it is %q", f.Name, readme, actual)
		}
		delete(documented, f.Name)
	})
	for name := range documented {
		t.Errorf("the README documents --%s, which herald does not have", name)
	}
}

// documentedDefault is the default the README row gives flag: the code span
// of the default column in the flag's place (rows may list several flags),
// or "" when the column says none in words ("none", "host name").
func documentedDefault(row, flag string) string {
	cells := strings.Split(row, "|")
	flags := regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(cells[1], -1)
	defaults := regexp.MustCompile("`([^`]*)`").FindAllStringSubmatch(cells[3], -1)
	for i, m := range flags {
		if m[1] == flag && i < len(defaults) && !strings.HasPrefix(defaults[i][1], "--") {
			return defaults[i][1]
		}
	}
	return ""
}

// flagDefault is f's default as the binary has it. List flags keep theirs
// in the usage text.
func flagDefault(f *flag.Flag) string {
	if m := regexp.MustCompile(`default "([^"]*)"\)$`).FindStringSubmatch(f.Usage); m != nil && f.DefValue == "" {
		return m[1]
	}
	return f.DefValue
}

func sameDefault(readme, actual string) bool {
	switch actual {
	case "0", "false", "0s":
		actual = "" // the README may say "none"
		if readme == "0" || readme == "false" || readme == "0s" {
			return true
		}
	}
	if a, err := time.ParseDuration(readme); err == nil {
		b, err := time.ParseDuration(actual)
		return err == nil && a == b
	}
	return readme == actual
}
