package hearth

import (
	"slices"
	"strings"
	"testing"
)

// mayImport is docs/architecture.md's "imports" column as code: for each
// package of the module, the packages of the module it may import (its
// non-test files; tests may reach further). An entry ending in "/" allows
// everything under that folder; "*" allows every package that is not a
// command. A package missing here fails the test, so a new package comes
// with its row in the table and a line here.
var mayImport = map[string][]string{
	"cmd/hearth":       {"daemon", "localapi/control", "localapi/controlclient", "packaging", "tray"},
	"cmd/hearth-bench": {"calls/media", "calls/media/mediatest", "internal/netns"},
	"cmd/hearth-dist":  {"packaging", "packaging/icons"},
	"daemon":           {"*"},
	"appservice":       {"internal/room", "internal/store", "internal/account", "internal/e2ee", "internal/matrixerr"},

	"localapi/control":                  {"internal/matrixerr"},
	"localapi/controlclient":            {"localapi/control"},
	"localapi/controlclient/browserspy": nil,
	"localapi/matrix":                   {"internal/", "push"},

	"federation":            {"internal/", "federation/ratelimit"},
	"federation/queue":      {"internal/room", "internal/store"},
	"federation/ratelimit":  nil,
	"federation/resolve":    {"internal/netscope"},
	"federation/serverkeys": {"internal/matrixerr", "internal/store", "federation/ratelimit"},
	"discovery":             {"internal/netmon", "internal/store"},

	"calls/agent":           {"calls/media", "internal/room", "internal/stream"},
	"calls/media":           nil,
	"calls/media/mediatest": {"calls/media"},
	"calls/turn":            {"internal/netscope"},
	"push":                  {"internal/room", "internal/store", "internal/account", "internal/matrixerr", "internal/netscope"},
	"tray":                  {"localapi/control", "localapi/controlclient", "packaging/icons"},
	"packaging":             {"localapi/controlclient"},
	"packaging/icons":       nil,

	"internal/room":      {"internal/store", "internal/stream", "internal/matrixerr", "internal/stateres"},
	"internal/account":   {"internal/store", "internal/matrixerr"},
	"internal/e2ee":      {"internal/store", "internal/matrixerr"},
	"internal/media":     {"internal/store", "internal/matrixerr", "internal/netscope"},
	"internal/search":    {"internal/room", "internal/store", "internal/matrixerr"},
	"internal/delayed":   {"internal/room", "internal/store", "internal/matrixerr"},
	"internal/stateres":  nil,
	"internal/store":     nil,
	"internal/stream":    nil,
	"internal/matrixerr": nil,
	"internal/netmon":    nil,
	"internal/netscope":  nil,
	"internal/netns":     nil,
	"internal/secrets":   nil,

	"internal/netns/netnstest": nil,
	"internal/e2e":             nil,
}

// TestImportBoundaries: dependencies point down the table in
// docs/architecture.md; nothing imports a command or the daemon.
func TestImportBoundaries(t *testing.T) {
	for _, p := range goList(t) {
		if p.ImportPath == "" {
			continue
		}
		allowed, ok := mayImport[p.ImportPath]
		if !ok {
			t.Errorf("%s is not in mayImport (imports_test.go): add it, with its row in docs/architecture.md", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			if imp = rel(imp); !may(allowed, imp) {
				t.Errorf("%s imports %s, which docs/architecture.md does not let it", p.ImportPath, imp)
			}
		}
	}
}

func may(allowed []string, imp string) bool {
	if strings.HasPrefix(imp, "cmd/") {
		return false
	}
	return slices.ContainsFunc(allowed, func(a string) bool {
		return a == "*" && imp != "daemon" || a == imp || strings.HasSuffix(a, "/") && strings.HasPrefix(imp, a)
	})
}
