package main

// Timestamped Ed25519 checkpoint cosignatures (c2sp.org/tlog-cosignature, signature
// type 0x04), written from the spec with crypto/ed25519 only: x/mod's note package
// knows type 0x01 alone, but accepts any note.Verifier and note.Signer, so note.Open
// and note.Sign do the note parsing and these types do the cosignature.
//
// Request sections:
//
//	cosigner_keys  {"name", "key"}                  the vkey for a name and public key
//	cosign         {"name", "seed", "timestamp", "note", "verifier_keys"}
//	               open the note with the log's keys, add a cosignature by seed
//	cosigned       {"note", "log_keys", "cosigner_keys"}
//	               note.Open with the log keys and the cosigner vkeys; for each
//	               cosigner that verified, the timestamp it signed

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

const cosignatureType = 0x04

type cosignerKeyCase struct {
	Name string `json:"name"`
	Key  []byte `json:"key"`
}

type cosignCase struct {
	Name         string   `json:"name"`
	Seed         []byte   `json:"seed"`
	Timestamp    uint64   `json:"timestamp"`
	Note         string   `json:"note"`
	VerifierKeys []string `json:"verifier_keys"`
}

type cosignedCase struct {
	Note         string   `json:"note"`
	LogKeys      []string `json:"log_keys"`
	CosignerKeys []string `json:"cosigner_keys"`
}

type cosignedResult struct {
	Error      string            `json:"error"`
	Text       string            `json:"text,omitempty"`
	Timestamps map[string]uint64 `json:"timestamps,omitempty"`
	Verified   []string          `json:"verified,omitempty"`
	Unverified []string          `json:"unverified,omitempty"`
}

// cosignerKeyHash is SHA-256(name || "\n" || 0x04 || public key)[:4], big-endian.
func cosignerKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', cosignatureType})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil)[:4])
}

func cosignerVKey(name string, pub ed25519.PublicKey) string {
	key := append([]byte{cosignatureType}, pub...)
	return fmt.Sprintf("%s+%08x+%s", name, cosignerKeyHash(name, pub), base64.StdEncoding.EncodeToString(key))
}

// cosignedMessage is "cosignature/v1\ntime <t>\n" followed by the checkpoint body.
func cosignedMessage(timestamp uint64, body []byte) []byte {
	head := "cosignature/v1\ntime " + strconv.FormatUint(timestamp, 10) + "\n"
	return append([]byte(head), body...)
}

type cosignatureVerifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
	seen map[string]uint64
}

func (v *cosignatureVerifier) Name() string    { return v.name }
func (v *cosignatureVerifier) KeyHash() uint32 { return v.hash }

// Verify is given the note text and the signature after the 4-byte key id:
// an 8-byte big-endian timestamp and a 64-byte Ed25519 signature.
func (v *cosignatureVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	if !ed25519.Verify(v.pub, cosignedMessage(t, msg), sig[8:]) {
		return false
	}
	v.seen[v.name] = t
	return true
}

// newCosignatureVerifier parses a type 0x04 vkey: name+hex(key id)+base64(0x04 || key).
func newCosignatureVerifier(vkey string, seen map[string]uint64) (*cosignatureVerifier, error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	hash16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || name == "" {
		return nil, errors.New("malformed cosigner vkey")
	}
	hash, err1 := strconv.ParseUint(hash16, 16, 32)
	key, err2 := base64.StdEncoding.DecodeString(key64)
	if len(hash16) != 8 || err1 != nil || err2 != nil || len(key) != 1+ed25519.PublicKeySize {
		return nil, errors.New("malformed cosigner vkey")
	}
	if key[0] != cosignatureType {
		return nil, fmt.Errorf("cosigner vkey has signature type 0x%02x, want 0x04", key[0])
	}
	pub := ed25519.PublicKey(key[1:])
	if uint32(hash) != cosignerKeyHash(name, pub) {
		return nil, errors.New("cosigner vkey: key id does not match name and key")
	}
	return &cosignatureVerifier{name: name, hash: uint32(hash), pub: pub, seen: seen}, nil
}

type cosignatureSigner struct {
	name      string
	hash      uint32
	priv      ed25519.PrivateKey
	timestamp uint64
}

func (s *cosignatureSigner) Name() string    { return s.name }
func (s *cosignatureSigner) KeyHash() uint32 { return s.hash }
func (s *cosignatureSigner) Sign(msg []byte) ([]byte, error) {
	out := binary.BigEndian.AppendUint64(nil, s.timestamp)
	return append(out, ed25519.Sign(s.priv, cosignedMessage(s.timestamp, msg))...), nil
}

func cosign(c cosignCase) result {
	if len(c.Seed) != ed25519.SeedSize {
		return result{Error: "seed must be 32 bytes"}
	}
	priv := ed25519.NewKeyFromSeed(c.Seed)
	pub := priv.Public().(ed25519.PublicKey)
	known, err := verifiers(c.VerifierKeys)
	if err != nil {
		return result{Error: err.Error()}
	}
	n, err := note.Open([]byte(c.Note), known)
	if err != nil {
		return result{Error: "open before cosigning: " + errText(err)}
	}
	signer := &cosignatureSigner{c.Name, cosignerKeyHash(c.Name, pub), priv, c.Timestamp}
	msg, err := note.Sign(n, signer)
	if err != nil {
		return result{Error: errText(err)}
	}
	return result{Text: string(msg)}
}

func openCosigned(c cosignedCase) cosignedResult {
	seen := map[string]uint64{}
	var list []note.Verifier
	for _, k := range c.LogKeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return cosignedResult{Error: fmt.Sprintf("log key %q: %v", k, err)}
		}
		list = append(list, v)
	}
	for _, k := range c.CosignerKeys {
		v, err := newCosignatureVerifier(k, seen)
		if err != nil {
			return cosignedResult{Error: fmt.Sprintf("cosigner key %q: %v", k, err)}
		}
		list = append(list, v)
	}
	n, err := note.Open([]byte(c.Note), note.VerifierList(list...))
	if err != nil {
		return cosignedResult{Error: errText(err)}
	}
	return cosignedResult{
		Text: n.Text, Timestamps: seen,
		Verified: signatures(n.Sigs), Unverified: signatures(n.UnverifiedSigs),
	}
}
