package matrix_test

import (
	"testing"
)

// TestVersionsFeatures: GET /versions matches versions.yaml and advertises,
// in the unstable_features form clients read, what Hearth implements:
// Element hides cross-signing verification without
// org.matrix.e2e_cross_signing. Features Hearth lacks are not claimed.
func TestVersionsFeatures(t *testing.T) {
	sp := loadSpec(t)
	ts := newTestServer(t)
	r := ts.do(t, "GET", "/_matrix/client/versions", "", nil)
	r.wantStatus(t, 200)
	sp.check(t, r)
	body := r.json(t)
	features, _ := body["unstable_features"].(map[string]any)
	for _, f := range []string{"org.matrix.e2e_cross_signing", "org.matrix.msc2285.stable", "org.matrix.msc3440.stable",
		"org.matrix.msc3916.stable", "org.matrix.msc3952_intentional_mentions", "org.matrix.msc4222", "org.matrix.msc4155"} {
		if features[f] != true {
			t.Errorf("unstable_features[%q] = %v, want true", f, features[f])
		}
	}
	for _, f := range []string{"org.matrix.msc3827.stable", "org.matrix.label_based_filtering",
		"io.element.e2ee_forced.public", "io.element.e2ee_forced.private", "io.element.e2ee_forced.trusted_private"} {
		if v, ok := features[f]; ok && v != false {
			t.Errorf("unstable_features[%q] = %v, but Hearth does not have it", f, v)
		}
	}
	versions, _ := body["versions"].([]any)
	has := map[string]bool{}
	for _, v := range versions {
		has[v.(string)] = true
	}
	for _, v := range []string{"r0.6.1", "v1.1", "v1.11", "v1.16"} {
		if !has[v] {
			t.Errorf("versions lacks %s: %v", v, versions)
		}
	}
}
