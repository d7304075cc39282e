package search

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxTermBytes drops tokens longer than any word (hashes, base64 blobs):
// they would bloat the index and nobody searches for them.
const maxTermBytes = 64

// maxTokens bounds the work one event can cause; a 64 KiB body has at
// most this many words anyway.
const maxTokens = 8192

// tokenize splits text into lowercase terms: maximal runs of Unicode
// letters, digits and combining marks. Scripts written without spaces
// (Chinese, Japanese) therefore index whole runs; a prefix query still
// finds a run by its start.
func tokenize(text string) []string {
	var out []string
	inWord := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) }
	start := -1
	for i, r := range text {
		if inWord(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = appendTerm(out, text[start:i])
			start = -1
		}
		if len(out) >= maxTokens {
			return out
		}
	}
	if start >= 0 {
		out = appendTerm(out, text[start:])
	}
	return out
}

func appendTerm(out []string, word string) []string {
	t := strings.ToLower(word)
	if len(t) > maxTermBytes || !utf8.ValidString(t) {
		return out
	}
	return append(out, t)
}
