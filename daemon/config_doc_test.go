package daemon

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestConfigurationDocs: docs/configuration.md's table of keys names
// exactly the keys of Config, so a setting is never
// added, renamed or dropped without its line in the docs.
func TestConfigurationDocs(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "\n## Keys\n")
	if !ok {
		t.Fatal(`docs/configuration.md has no "## Keys" section`)
	}
	table, _, _ = strings.Cut(table, "\n## ")
	var documented []string
	// A row's first cell names one key, or a few that share a meaning:
	// | `tls_cert`, `tls_key` | …
	name := regexp.MustCompile("`([a-z0-9_]+)`")
	for _, cell := range regexp.MustCompile("(?m)^\\| (`[^|]+) \\|").FindAllStringSubmatch(table, -1) {
		for _, m := range name.FindAllStringSubmatch(cell[1], -1) {
			documented = append(documented, m[1])
		}
	}
	var keys []string
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		if k := f.Tag.Get("key"); k != "" {
			keys = append(keys, k)
			if f.Tag.Get("help") == "" {
				t.Errorf("config key %s has no help text (hearth config defaults prints it)", k)
			}
		}
	}
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("config key %s is not in docs/configuration.md's table", k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(keys, k) {
			t.Errorf("docs/configuration.md documents %s, which is not a config key", k)
		}
	}
}
