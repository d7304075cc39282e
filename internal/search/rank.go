package search

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/hearth-chat/hearth/internal/store"
)

// Matching and ranking (Client-Server API §"Server Side Search"): the
// postings of each term, their intersection, BM25 weights, and the words
// to highlight.

// corpusDocs stands in for the number of indexed events in the IDF: a
// constant keeps scores independent of messages that arrive between pages.
const corpusDocs = 1e6

// highlights are the words to highlight in the results: the query's
// terms, and the words the prefix term (the last, if prefix) matched in
// cands alone, read from its postings lastPs: words of events the user may
// not be shown would spell them out. cands and lastPs are in NID order.
func highlights(terms []string, prefix bool, cands []candidate, lastPs []posting, words []string) []string {
	out := []string{}
	if len(cands) == 0 {
		return out
	}
	seen := map[string]bool{}
	for _, t := range terms[:len(terms)-1] {
		seen[t] = true
	}
	if !prefix {
		seen[terms[len(terms)-1]] = true
	}
	matched := make([]bool, len(words))
	for i, j := 0, 0; prefix && i < len(cands) && j < len(lastPs); {
		switch p := lastPs[j]; {
		case p.nid < cands[i].nid:
			j++
		case p.nid > cands[i].nid:
			i++
		default:
			matched[p.word] = true
			i++
			j++
		}
	}
	for k, w := range words {
		if matched[k] {
			seen[w] = true
		}
	}
	for w := range seen {
		out = append(out, w)
	}
	slices.Sort(out)
	return out
}

// posting is one event's match for one term.
type posting struct {
	nid, roomNID uint64
	weight       float64
	// word is the indexed word it matched, as an index into the words
	// postings returns; an event matching several words of a prefix keeps
	// its first (the others are highlighted only if another hit has them).
	word int32
}

// postings reads the events that contain term (or, with prefix, any term
// that starts with it), in NID order, keeping those at or before upTo in
// the allowed rooms and fields. Exact matches weigh double prefix ones.
func postings(tx *store.Tx, term string, prefix bool, upTo uint64, fields byte, allowed map[uint64]bool) ([]posting, []string) {
	seek := []byte(term + "\x00")
	if prefix {
		seek = []byte(term)
	}
	var out []posting
	sorted := true
	var lastMatched []byte
	var words []string // the distinct indexed words matched, in key order
	c := tx.Cursor(store.SearchTerms)
	for k, v := c.Seek(seek); len(k) > 9 && bytes.HasPrefix(k, seek); k, v = c.Next() {
		nid := store.U64(k[len(k)-8:])
		if nid > upTo {
			continue
		}
		roomNID, n := binary.Uvarint(v)
		if n <= 0 || len(v) <= n || !allowed[roomNID] || v[n]&fields == 0 {
			continue
		}
		tf, m := binary.Uvarint(v[n+1:])
		length, _ := binary.Uvarint(v[n+1+m:])
		w := bm25(float64(tf), float64(length))
		matched := k[:len(k)-9]
		if string(matched) != term {
			w /= 2
		}
		if !bytes.Equal(matched, lastMatched) {
			// Keys are grouped by term: one string per distinct term.
			lastMatched, words = matched, append(words, string(matched))
		}
		if len(out) > 0 && out[len(out)-1].nid >= nid {
			sorted = false
		}
		out = append(out, posting{nid: nid, roomNID: roomNID, weight: w, word: int32(len(words) - 1)})
	}
	if !sorted {
		// Several terms matched the prefix: merge them, keeping each
		// event's best weight.
		slices.SortFunc(out, func(a, b posting) int { return -cmpDesc(a.nid, b.nid) })
		merged := out[:0]
		for _, p := range out {
			if last := len(merged) - 1; last >= 0 && merged[last].nid == p.nid {
				merged[last].weight = max(merged[last].weight, p.weight)
				continue
			}
			merged = append(merged, p)
		}
		out = merged
	}
	return out, words
}

// bm25 is the term-frequency part of BM25 (k1 1.2, b 0.75) with a fixed
// average length of a chat message.
func bm25(tf, length float64) float64 {
	const k1, b, avgLen = 1.2, 0.75, 12.0
	return tf * (k1 + 1) / (tf + k1*(1-b+b*length/avgLen))
}

// intersect keeps the candidates that also have a posting, adding its score.
func intersect(cands []candidate, ps []posting, idf float64) []candidate {
	out := cands[:0]
	i, j := 0, 0
	for i < len(cands) && j < len(ps) {
		switch {
		case cands[i].nid < ps[j].nid:
			i++
		case cands[i].nid > ps[j].nid:
			j++
		default:
			c := cands[i]
			c.score += idf * ps[j].weight
			out = append(out, c)
			i++
			j++
		}
	}
	return out
}
