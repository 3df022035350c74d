// Command sumdbcheck runs Provenance's transparency-log artefacts through Go's
// reference implementation, golang.org/x/mod/sumdb/note and sumdb/tlog.
//
// It reads one JSON request on stdin and writes one JSON reply on stdout. It makes
// no judgement of its own: for every case it reports what note and tlog said (the
// error text, or the values they computed) and the Python test compares that with
// what provenance.checkpoint and provenance.merkle say. See tests/test_go_reference.py.
//
// Request sections (all optional):
//
//	verifier_keys  {"text"}                      note.NewVerifier(text)
//	public_keys    {"name", "key"}               note.NewEd25519VerifierKey(name, key)
//	notes          {"note", "verifier_keys"}     note.Open(note, verifiers)
//	trees          {"text"}                      tlog.ParseTree(text)
//	sign           {"signer_key", "text"}        note.Sign of a new note, or with
//	               {"signer_key", "note", "verifier_keys"}  a cosignature added to an opened one
//	logs           {"records", "leaves", "nodes", "tree_sizes", "inclusion", "consistency"}
//	               nodes are our complete-subtree hashes (level, index, hash); tlog reads
//	               them through a HashReader keyed by tlog.StoredHashIndex.
//	tlog_proofs    {"proof", "leaf", "verifier_keys"}  a C2SP tlog-proof (c2sp.org/tlog-proof):
//	               read line by line as the spec words it, its checkpoint opened with
//	               note.Open, its inclusion proof checked with tlog.CheckRecord.
//	cosigner_keys, cosign, cosigned: C2SP cosignatures, see cosignature.go.
//
// Hashes travel as standard base64 (tlog.Hash's JSON form).
package main

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	VerifierKeys []struct {
		Text string `json:"text"`
	} `json:"verifier_keys"`
	PublicKeys []struct {
		Name string `json:"name"`
		Key  []byte `json:"key"` // base64 in JSON
	} `json:"public_keys"`
	Notes []noteCase `json:"notes"`
	Trees []struct {
		Text string `json:"text"`
	} `json:"trees"`
	Sign       []signCase      `json:"sign"`
	Logs       []logCase       `json:"logs"`
	TlogProofs []tlogProofCase `json:"tlog_proofs"`

	CosignerKeys []cosignerKeyCase `json:"cosigner_keys"`
	Cosign       []cosignCase      `json:"cosign"`
	Cosigned     []cosignedCase    `json:"cosigned"`
}

type tlogProofCase struct {
	Proof        string    `json:"proof"`
	Leaf         tlog.Hash `json:"leaf"`
	VerifierKeys []string  `json:"verifier_keys"`
}

type noteCase struct {
	Note         string   `json:"note"`
	VerifierKeys []string `json:"verifier_keys"`
}

type signCase struct {
	SignerKey    string   `json:"signer_key"`
	Text         string   `json:"text"`
	Note         string   `json:"note"`
	VerifierKeys []string `json:"verifier_keys"`
}

type node struct {
	Level int       `json:"level"`
	Index int64     `json:"index"`
	Hash  tlog.Hash `json:"hash"`
}

type inclusionCase struct {
	Index int64       `json:"index"`
	Size  int64       `json:"size"`
	Leaf  tlog.Hash   `json:"leaf"`
	Proof []tlog.Hash `json:"proof"`
	Root  tlog.Hash   `json:"root"`
	Prove bool        `json:"prove"`
}

type consistencyCase struct {
	Size1 int64       `json:"size1"`
	Size2 int64       `json:"size2"`
	Proof []tlog.Hash `json:"proof"`
	Root1 tlog.Hash   `json:"root1"`
	Root2 tlog.Hash   `json:"root2"`
	Prove bool        `json:"prove"`
}

type logCase struct {
	Records     [][]byte          `json:"records"` // leaf data, base64 in JSON
	Leaves      []tlog.Hash       `json:"leaves"`
	Nodes       []node            `json:"nodes"`
	TreeSizes   []int64           `json:"tree_sizes"`
	Inclusion   []inclusionCase   `json:"inclusion"`
	Consistency []consistencyCase `json:"consistency"`
}

// result is one case's answer: Error is "" when the Go call succeeded.
type result struct {
	Error      string      `json:"error"`
	Text       string      `json:"text,omitempty"`
	Verified   []string    `json:"verified,omitempty"`
	Unverified []string    `json:"unverified,omitempty"`
	Size       int64       `json:"size,omitempty"`
	Hash       *tlog.Hash  `json:"hash,omitempty"`
	Proof      []tlog.Hash `json:"proof,omitempty"`
	ProveError string      `json:"prove_error,omitempty"`
}

type logResult struct {
	// RecordHashes is tlog.RecordHash of each record.
	RecordHashes []tlog.Hash `json:"record_hashes"`
	// StoredHashes lists every node of ours that differs from what
	// tlog.StoredHashesForRecordHash computes from the same leaves, and
	// StoredHashCount is tlog.StoredHashCount(len(leaves)).
	StoredHashMismatches []string `json:"stored_hash_mismatches"`
	StoredHashCount      int64    `json:"stored_hash_count"`
	TreeHashes           []result `json:"tree_hashes"`
	Inclusion            []result `json:"inclusion"`
	Consistency          []result `json:"consistency"`
}

type reply struct {
	VerifierKeys []result    `json:"verifier_keys"`
	PublicKeys   []result    `json:"public_keys"`
	Notes        []result    `json:"notes"`
	Trees        []result    `json:"trees"`
	Sign         []result    `json:"sign"`
	Logs         []logResult `json:"logs"`
	TlogProofs   []result    `json:"tlog_proofs"`

	CosignerKeys []result         `json:"cosigner_keys"`
	Cosign       []result         `json:"cosign"`
	Cosigned     []cosignedResult `json:"cosigned"`
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	if err.Error() == "" {
		return fmt.Sprintf("%T", err) // never report a failure as success
	}
	return err.Error()
}

func verifiers(keys []string) (note.Verifiers, error) {
	var list []note.Verifier
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("verifier key %q: %w", k, err)
		}
		list = append(list, v)
	}
	return note.VerifierList(list...), nil
}

func signatures(sigs []note.Signature) []string {
	out := []string{}
	for _, s := range sigs {
		out = append(out, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	return out
}

func openNote(c noteCase) result {
	known, err := verifiers(c.VerifierKeys)
	if err != nil {
		return result{Error: err.Error()}
	}
	n, err := note.Open([]byte(c.Note), known)
	if err != nil {
		return result{Error: errText(err)}
	}
	return result{Text: n.Text, Verified: signatures(n.Sigs), Unverified: signatures(n.UnverifiedSigs)}
}

func signNote(c signCase) result {
	signer, err := note.NewSigner(c.SignerKey)
	if err != nil {
		return result{Error: "signer key: " + errText(err)}
	}
	n := &note.Note{Text: c.Text}
	if c.Note != "" {
		known, err := verifiers(c.VerifierKeys)
		if err != nil {
			return result{Error: err.Error()}
		}
		if n, err = note.Open([]byte(c.Note), known); err != nil {
			return result{Error: "open before cosigning: " + errText(err)}
		}
	}
	msg, err := note.Sign(n, signer)
	if err != nil {
		return result{Error: errText(err)}
	}
	return result{Text: string(msg)}
}

func parseTree(text string) result {
	tree, err := tlog.ParseTree([]byte(text))
	if err != nil {
		return result{Error: errText(err)}
	}
	return result{Size: tree.N, Hash: &tree.Hash}
}

// hashStore is a tlog.HashReader over hashes held by stored-hash index.
type hashStore map[int64]tlog.Hash

func (s hashStore) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := s[x]
		if !ok {
			level, n := tlog.SplitStoredHashIndex(x)
			return nil, fmt.Errorf("no stored hash for subtree (level %d, index %d)", level, n)
		}
		out[i] = h
	}
	return out, nil
}

func checkLog(c logCase) logResult {
	ours := hashStore{}
	for _, nd := range c.Nodes {
		ours[tlog.StoredHashIndex(nd.Level, nd.Index)] = nd.Hash
	}

	res := logResult{
		RecordHashes:         []tlog.Hash{},
		StoredHashMismatches: []string{},
		TreeHashes:           []result{},
		Inclusion:            []result{},
		Consistency:          []result{},
	}
	for _, data := range c.Records {
		res.RecordHashes = append(res.RecordHashes, tlog.RecordHash(data))
	}

	// tlog's own stored hashes, written leaf by leaf as a go.sum database does.
	goStore := hashStore{}
	next := int64(0)
	for i, leaf := range c.Leaves {
		hashes, err := tlog.StoredHashesForRecordHash(int64(i), leaf, goStore)
		if err != nil {
			res.StoredHashMismatches = append(res.StoredHashMismatches, fmt.Sprintf("leaf %d: %v", i, err))
			break
		}
		for _, h := range hashes {
			goStore[next] = h
			next++
		}
	}
	res.StoredHashCount = tlog.StoredHashCount(int64(len(c.Leaves)))
	for _, nd := range c.Nodes {
		x := tlog.StoredHashIndex(nd.Level, nd.Index)
		if h, ok := goStore[x]; !ok || h != nd.Hash {
			res.StoredHashMismatches = append(res.StoredHashMismatches,
				fmt.Sprintf("subtree (level %d, index %d): ours %v, tlog %v", nd.Level, nd.Index, nd.Hash, h))
		}
	}

	for _, n := range c.TreeSizes {
		h, err := tlog.TreeHash(n, ours)
		r := result{Error: errText(err), Size: n}
		if err == nil {
			r.Hash = &h
		}
		res.TreeHashes = append(res.TreeHashes, r)
	}
	for _, ic := range c.Inclusion {
		r := result{Error: errText(tlog.CheckRecord(ic.Proof, ic.Size, ic.Root, ic.Index, ic.Leaf))}
		if ic.Prove {
			p, err := tlog.ProveRecord(ic.Size, ic.Index, ours)
			r.Proof, r.ProveError = p, errText(err)
		}
		res.Inclusion = append(res.Inclusion, r)
	}
	for _, cc := range c.Consistency {
		r := result{Error: errText(tlog.CheckTree(cc.Proof, cc.Size2, cc.Root2, cc.Size1, cc.Root1))}
		if cc.Prove {
			p, err := tlog.ProveTree(cc.Size2, cc.Size1, ours)
			r.Proof, r.ProveError = p, errText(err)
		}
		res.Consistency = append(res.Consistency, r)
	}
	return res
}

// checkTlogProof reads a tlog-proof as c2sp.org/tlog-proof words it: the header, an
// optional extra line, the index, the proof hashes, an empty line, the checkpoint.
// Size and Hash in the result are the checkpoint's tree size and root.
func checkTlogProof(c tlogProofCase) result {
	head, checkpoint, found := strings.Cut(c.Proof, "\n\n")
	if !found {
		return result{Error: "no empty line before the checkpoint"}
	}
	lines := strings.Split(head, "\n")
	if lines[0] != "c2sp.org/tlog-proof@v1" {
		return result{Error: "bad header line"}
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		if _, err := base64.StdEncoding.Strict().DecodeString(lines[0][6:]); err != nil {
			return result{Error: "extra: " + errText(err)}
		}
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return result{Error: "no index line"}
	}
	number := lines[0][6:]
	index, err := strconv.ParseInt(number, 10, 64)
	if err != nil || strconv.FormatInt(index, 10) != number || index < 0 {
		return result{Error: "bad index " + strconv.Quote(number)}
	}
	var proof tlog.RecordProof
	for _, line := range lines[1:] {
		raw, err := base64.StdEncoding.Strict().DecodeString(line)
		if err != nil || len(raw) != tlog.HashSize {
			return result{Error: "bad proof hash " + strconv.Quote(line)}
		}
		var h tlog.Hash
		copy(h[:], raw)
		proof = append(proof, h)
	}
	known, err := verifiers(c.VerifierKeys)
	if err != nil {
		return result{Error: err.Error()}
	}
	n, err := note.Open([]byte(checkpoint), known)
	if err != nil {
		return result{Error: "checkpoint: " + errText(err)}
	}
	body := strings.SplitN(n.Text, "\n", 4)
	if len(body) < 4 {
		return result{Error: "checkpoint text has fewer than three lines"}
	}
	tree, err := tlog.ParseTree([]byte("go.sum database tree\n" + body[1] + "\n" + body[2] + "\n"))
	if err != nil {
		return result{Error: "checkpoint: " + errText(err)}
	}
	r := result{Size: tree.N, Hash: &tree.Hash, Text: body[0]}
	r.Error = errText(tlog.CheckRecord(proof, tree.N, tree.Hash, index, c.Leaf))
	return r
}

func main() {
	var req request
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "sumdbcheck: bad request:", err)
		os.Exit(2)
	}

	rep := reply{
		VerifierKeys: []result{}, PublicKeys: []result{}, Notes: []result{},
		Trees: []result{}, Sign: []result{}, Logs: []logResult{}, TlogProofs: []result{},
		CosignerKeys: []result{}, Cosign: []result{}, Cosigned: []cosignedResult{},
	}
	for _, k := range req.VerifierKeys {
		v, err := note.NewVerifier(k.Text)
		r := result{Error: errText(err)}
		if err == nil {
			r.Text = fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
		}
		rep.VerifierKeys = append(rep.VerifierKeys, r)
	}
	for _, k := range req.PublicKeys {
		vkey, err := note.NewEd25519VerifierKey(k.Name, ed25519.PublicKey(k.Key))
		rep.PublicKeys = append(rep.PublicKeys, result{Error: errText(err), Text: vkey})
	}
	for _, c := range req.Notes {
		rep.Notes = append(rep.Notes, openNote(c))
	}
	for _, t := range req.Trees {
		rep.Trees = append(rep.Trees, parseTree(t.Text))
	}
	for _, c := range req.Sign {
		rep.Sign = append(rep.Sign, signNote(c))
	}
	for _, c := range req.Logs {
		rep.Logs = append(rep.Logs, checkLog(c))
	}
	for _, c := range req.TlogProofs {
		rep.TlogProofs = append(rep.TlogProofs, checkTlogProof(c))
	}

	for _, k := range req.CosignerKeys {
		if len(k.Key) != ed25519.PublicKeySize {
			rep.CosignerKeys = append(rep.CosignerKeys, result{Error: "key must be 32 bytes"})
			continue
		}
		rep.CosignerKeys = append(rep.CosignerKeys, result{Text: cosignerVKey(k.Name, k.Key)})
	}
	for _, c := range req.Cosign {
		rep.Cosign = append(rep.Cosign, cosign(c))
	}
	for _, c := range req.Cosigned {
		rep.Cosigned = append(rep.Cosigned, openCosigned(c))
	}

	out := bufio.NewWriter(os.Stdout)
	if err := json.NewEncoder(out).Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "sumdbcheck: writing the reply:", err)
		os.Exit(2)
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "sumdbcheck: writing the reply:", err)
		os.Exit(2)
	}
}
