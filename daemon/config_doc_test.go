package daemon

import (
	"flag"
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

// TestTypedValues: on/off keys and keys with a fixed set of values are
// read by their type wherever they come from: a value outside the set is
// refused with the key and the choices named, and an on/off key is a
// boolean to the code.
func TestTypedValues(t *testing.T) {
	getenv := func(k string) string {
		return map[string]string{"HEARTH_DATA_DIR": t.TempDir(), "HEARTH_ECHO_TEST": "off", "HEARTH_URL_PREVIEWS": "on"}[k]
	}
	c, err := Load(flag.NewFlagSet("t", flag.ContinueOnError), "", getenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.EchoTest || !c.URLPreviews || !c.Voicemail {
		t.Errorf("echo_test %v url_previews %v voicemail %v, want off, on and the default on", c.EchoTest, c.URLPreviews, c.Voicemail)
	}
	for key, bad := range map[string]string{"echo_test": "yes", "lan_discovery": "sometimes", "log_level": "loud"} {
		env := func(k string) string {
			if k == "HEARTH_"+strings.ToUpper(key) {
				return bad
			}
			return getenv(k)
		}
		_, err := Load(flag.NewFlagSet("t", flag.ContinueOnError), "", env)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), key) || !strings.Contains(err.Error(), " or ") {
			t.Errorf("%s = %s: %v, want a refusal naming the key and the choices", key, bad, err)
		}
	}
}
