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
// terms, and the words the prefix term (the last, if prefix) matched, in
// cands alone: words of events the user may not be shown would spell
// them out.
func highlights(terms []string, prefix bool, cands []candidate) []string {
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
	for _, c := range cands {
		for _, w := range c.words {
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
	words        []string // with a prefix term: the indexed words it matched
}

// postings reads the events that contain term (or, with prefix, any term
// that starts with it), in NID order, keeping those at or before upTo in
// the allowed rooms and fields. Exact matches weigh double prefix ones.
func postings(tx *store.Tx, term string, prefix bool, upTo uint64, fields byte, allowed map[uint64]bool) []posting {
	seek := []byte(term + "\x00")
	if prefix {
		seek = []byte(term)
	}
	var out []posting
	sorted := true
	var lastMatched []byte
	var word string
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
			lastMatched, word = matched, string(matched)
		}
		if len(out) > 0 && out[len(out)-1].nid >= nid {
			sorted = false
		}
		p := posting{nid: nid, roomNID: roomNID, weight: w}
		if prefix {
			p.words = []string{word}
		}
		out = append(out, p)
	}
	if !sorted {
		// Several terms matched the prefix: merge them, keeping each
		// event's best weight.
		slices.SortFunc(out, func(a, b posting) int { return -cmpDesc(a.nid, b.nid) })
		merged := out[:0]
		for _, p := range out {
			if last := len(merged) - 1; last >= 0 && merged[last].nid == p.nid {
				merged[last].weight = max(merged[last].weight, p.weight)
				merged[last].words = append(merged[last].words, p.words...)
				continue
			}
			merged = append(merged, p)
		}
		out = merged
	}
	return out
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
			c.words = ps[j].words
			out = append(out, c)
			i++
			j++
		}
	}
	return out
}
