// tilecheck reads a C2SP tlog-tiles folder with golang.org/x/mod/sumdb/tlog
// (tiles of height 8), a tile client the project did not write, and reports
// what it finds as JSON on stdout.
//
// Request (JSON on stdin):
//
//	{"dir": "...", "verifier_key": "...", "indexes": [0, 5, ...], "old_trees": [{"size": N, "hash": b64}]}
//
// It opens <dir>/checkpoint with note.Open, parses its body with tlog.ParseTree
// (origin line swapped for the one tlog accepts), reads hashes only through
// tlog.TileHashReader (which authenticates every tile against the tree hash),
// and for each index proves and checks the record of the entry bundle's entry
// with tlog.ProveRecord/CheckRecord; for each old tree, tlog.ProveTree/CheckTree.
// Every entry of every bundle must hash (tlog.RecordHash) to its level-0 hash.
package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

type oldTree struct {
	Size int64  `json:"size"`
	Hash []byte `json:"hash"`
}

type request struct {
	Dir         string    `json:"dir"`
	VerifierKey string    `json:"verifier_key"`
	Indexes     []int64   `json:"indexes"`
	OldTrees    []oldTree `json:"old_trees"`
}

type reply struct {
	Error     string   `json:"error"`
	Size      int64    `json:"size"`
	Hash      []byte   `json:"hash"`
	TreeHash  []byte   `json:"tree_hash"`
	Records   []string `json:"records"`    // per index: "" or the error
	Trees     []string `json:"trees"`      // per old tree: "" or the error
	Entries   int64    `json:"entries"`    // entries read from bundles and matched
	TilesRead int      `json:"tiles_read"` // tiles tlog asked for
	TilePaths []string `json:"tile_paths"` // the C2SP paths it read, first 50
}

// c2spPath maps tlog's tile path (tile/8/L/N[.p/W], data tiles tile/8/data/N)
// to the C2SP one (tile/L/N[.p/W], tile/entries/N).
func c2spPath(t tlog.Tile) string {
	p := t.Path()
	prefix := fmt.Sprintf("tile/%d/", height)
	if !strings.HasPrefix(p, prefix) {
		panic("unexpected tile path " + p)
	}
	rest := strings.TrimPrefix(p, prefix)
	if strings.HasPrefix(rest, "data/") {
		rest = "entries/" + strings.TrimPrefix(rest, "data/")
	}
	return "tile/" + rest
}

type dirReader struct {
	dir   string
	read  int
	paths []string
}

func (r *dirReader) Height() int { return height }

func (r *dirReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := c2spPath(t)
		data, err := os.ReadFile(filepath.Join(r.dir, filepath.FromSlash(p)))
		if err != nil {
			return nil, err
		}
		r.read++
		if len(r.paths) < 50 {
			r.paths = append(r.paths, p)
		}
		out[i] = data
	}
	return out, nil
}

func (r *dirReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func decodeBundle(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("truncated length")
		}
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		if len(data) < n {
			return nil, fmt.Errorf("entry %d runs past the end", len(out))
		}
		out = append(out, data[:n])
		data = data[n:]
	}
	return out, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func run(req request) reply {
	var rep reply
	raw, err := os.ReadFile(filepath.Join(req.Dir, "checkpoint"))
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	verifier, err := note.NewVerifier(req.VerifierKey)
	if err != nil {
		rep.Error = "verifier key: " + err.Error()
		return rep
	}
	n, err := note.Open(raw, note.VerifierList(verifier))
	if err != nil {
		rep.Error = "note.Open: " + err.Error()
		return rep
	}
	lines := strings.SplitN(n.Text, "\n", 2)
	tree, err := tlog.ParseTree([]byte("go.sum database tree\n" + lines[1]))
	if err != nil {
		rep.Error = "tlog.ParseTree: " + err.Error()
		return rep
	}
	rep.Size, rep.Hash = tree.N, tree.Hash[:]
	tiles := &dirReader{dir: req.Dir}
	hr := tlog.TileHashReader(tree, tiles)
	th, err := tlog.TreeHash(tree.N, hr)
	if err != nil {
		rep.Error = "tlog.TreeHash: " + err.Error()
		return rep
	}
	rep.TreeHash = th[:]
	// Every entry of every bundle hashes to its level-0 hash (read through tlog).
	for start := int64(0); start < tree.N; start += 1 << height {
		w := tree.N - start
		if w > 1<<height {
			w = 1 << height
		}
		t := tlog.Tile{H: height, L: -1, N: start >> height, W: int(w)}
		data, err := os.ReadFile(filepath.Join(req.Dir, filepath.FromSlash(c2spPath(t))))
		if err != nil {
			rep.Error = "entry bundle: " + err.Error()
			return rep
		}
		entries, err := decodeBundle(data)
		if err != nil || int64(len(entries)) != w {
			rep.Error = fmt.Sprintf("entry bundle %s: %d entries, %v", c2spPath(t), len(entries), err)
			return rep
		}
		indexes := make([]int64, w)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		hashes, err := hr.ReadHashes(indexes)
		if err != nil {
			rep.Error = "level-0 hashes: " + err.Error()
			return rep
		}
		for i, e := range entries {
			if tlog.RecordHash(e) != hashes[i] {
				rep.Error = fmt.Sprintf("entry %d does not hash to its leaf", start+int64(i))
				return rep
			}
			rep.Entries++
		}
	}
	for _, i := range req.Indexes {
		t := tlog.Tile{H: height, L: -1, N: i >> height}
		w := tree.N - (t.N << height)
		if w > 1<<height {
			w = 1 << height
		}
		t.W = int(w)
		data, err := os.ReadFile(filepath.Join(req.Dir, filepath.FromSlash(c2spPath(t))))
		if err != nil {
			rep.Records = append(rep.Records, err.Error())
			continue
		}
		entries, err := decodeBundle(data)
		if err != nil || int64(len(entries)) <= i-(t.N<<height) {
			rep.Records = append(rep.Records, fmt.Sprintf("bundle: %v", err))
			continue
		}
		proof, err := tlog.ProveRecord(tree.N, i, hr)
		if err == nil {
			err = tlog.CheckRecord(proof, tree.N, tree.Hash, i, tlog.RecordHash(entries[i-(t.N<<height)]))
		}
		rep.Records = append(rep.Records, errText(err))
	}
	for _, old := range req.OldTrees {
		var h tlog.Hash
		copy(h[:], old.Hash)
		proof, err := tlog.ProveTree(tree.N, old.Size, hr)
		if err == nil {
			err = tlog.CheckTree(proof, tree.N, tree.Hash, old.Size, h)
		}
		rep.Trees = append(rep.Trees, errText(err))
	}
	rep.TilesRead, rep.TilePaths = tiles.read, tiles.paths
	return rep
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "tilecheck: bad request:", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(run(req)); err != nil {
		fmt.Fprintln(os.Stderr, "tilecheck:", err)
		os.Exit(2)
	}
}
