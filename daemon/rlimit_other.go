//go:build !unix

package daemon

// raiseFileLimit: Windows has no descriptor limit of this kind; 0 lets
// connBudget use its default.
func raiseFileLimit() int { return 0 }
