/* The scan page's own check of a lot's record, on the phone (docs/scan.md,
 * "Checked on this phone"; docs/protocol.md §7, §10, §12).
 *
 * It does what `provenance verify --bundle B --policy P` does, with WebCrypto
 * Ed25519 and SHA-256 and nothing else: no third-party code, no request but
 * to the page's own server. Steps, each a named failure (VerificationError.step):
 *
 *   POLICY      the policy: parsed strictly, pinned on this phone on first use
 *   CHECKPOINT  the bundle's checkpoint: signed by a log the policy lists whose
 *               key name is its origin; the witnesses' cosignatures meet the quorum
 *   FORMAT      the bundle's shape (provenance-bundle/v2)
 *   SIGNATURE   every envelope's Ed25519 signature
 *   CHAIN       indexes increasing and within the checkpoint; chain links
 *   INCLUSION   every tlog-proof proves its event's leaf in the checkpoint's tree
 *   HEADS       (key, length, head) in the heads tree; under the sorted rule its
 *               neighbours sort strictly apart (the lot's only chain)
 *   SIGNER      leaf 0 is the registrar's self-enrolment; identities enrolled by
 *               it; every lot event signed by an enrolled, unrevoked signer whose
 *               role may sign its kind
 *   UNSUPPORTED something this script does not check (a key rotation): the
 *               page says so and points to the offline check
 *   FETCH       the policy, bundle or sample could not be fetched: "could not check"
 *
 * The page works without this script; it only adds the phone's own verdict.
 */
(function (root) {
  "use strict";

  var BUNDLE_FORMAT = "provenance-bundle/v2";
  var PAGE_FORMAT = "provenance-page-bundle/v1"; // docs/protocol.md §12
  var SAMPLE = 64; // readings of a page-form lot checked in full, drawn on this phone
  var SIG_PREFIX = "\u2014 ";
  var MAX_SIGNATURES = 100;
  var SIGNATURE_BATCH = 256; // signatures checked per turn of the event loop

  // BEGIN SIGNER_ROLES (provenance/core/kinds.py; tests/test_verify_js.py compares)
  var PARTY_ROLES = ["producer", "processor", "carrier", "distributor", "retailer", "clinic",
    "inspector", "regulator"];
  var SIGNER_ROLES = {
    "enrol": ["registrar"],
    "revoke": ["registrar"],
    "commission": ["producer", "processor"],
    "reading": ["device"],
    "attach": PARTY_ROLES,
    "detach": PARTY_ROLES,
    "ship": PARTY_ROLES,
    "receive": PARTY_ROLES,
    "transform": ["producer", "processor"],
    "inspect": PARTY_ROLES,
    "recall": ["regulator"],
    "recall-lift": ["regulator"],
    "dispense": PARTY_ROLES,
    "epcis": PARTY_ROLES,
    "hold": ["rules"],
    "release": ["rules", "regulator"],
    "flag": ["rules"],
    "grant": ["registrar", "regulator"],
    "rotate": PARTY_ROLES.concat(["device", "rules", "registrar"]),
    "anchor": ["registrar", "rules"],
    "stability": ["producer", "processor"],
    "pack": PARTY_ROLES,
    "unpack": PARTY_ROLES,
    "serials": ["producer", "processor"],
    "recall-ack": PARTY_ROLES,
    "cool": PARTY_ROLES,
    "place": PARTY_ROLES
  };
  // END SIGNER_ROLES

  function VerificationError(step, message) {
    var error = new Error(message);
    error.name = "VerificationError";
    error.step = step;
    return error;
  }

  function fail(step, message) {
    throw VerificationError(step, message);
  }

  // --- bytes ---------------------------------------------------------------------------------

  var UTF8 = new TextEncoder();
  var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

  function utf8(text) {
    return UTF8.encode(text);
  }

  function concat(parts) {
    var size = 0, i, out, at = 0;
    for (i = 0; i < parts.length; i++) size += parts[i].length;
    out = new Uint8Array(size);
    for (i = 0; i < parts.length; i++) {
      out.set(parts[i], at);
      at += parts[i].length;
    }
    return out;
  }

  function hex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  function less(a, b) { // bytewise a < b
    for (var i = 0; i < Math.min(a.length, b.length); i++) {
      if (a[i] !== b[i]) return a[i] < b[i];
    }
    return a.length < b.length;
  }

  function b64encode(bytes) {
    var out = "", i, n;
    for (i = 0; i + 2 < bytes.length; i += 3) {
      n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
    }
    if (bytes.length - i === 1) {
      n = bytes[i] << 16;
      out += B64[n >> 18] + B64[(n >> 12) & 63] + "==";
    } else if (bytes.length - i === 2) {
      n = (bytes[i] << 16) | (bytes[i + 1] << 8);
      out += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + "=";
    }
    return out;
  }

  /** Strict RFC 4648 base64, padded and canonical (as the Python side reads it). */
  function b64decode(text, what) {
    if (typeof text !== "string" || text.length % 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
      fail("FORMAT", what + ": not standard padded base64");
    }
    var binary = atob(text), out = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    if (b64encode(out) !== text) fail("FORMAT", what + ": not canonical base64");
    return out;
  }

  /** Strict base64url without padding (envelope signatures). */
  function b64urlDecode(text, what) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
      fail("FORMAT", what + ": not base64url without padding");
    }
    var std = text.replace(/-/g, "+").replace(/_/g, "/");
    while (std.length % 4) std += "=";
    return b64decode(std, what);
  }

  var B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

  /** The 32-byte Ed25519 key inside a did:key (multicodec 0xed01), canonical only. */
  function didKey(did) {
    if (typeof did !== "string" || did.indexOf("did:key:z") !== 0 || did.length !== 56) {
      fail("SIGNATURE", "signer " + String(did).slice(0, 80) + " is not an Ed25519 did:key");
    }
    var digits = [0], text = did.slice(9), i, j, carry, value;
    for (i = 0; i < text.length; i++) {
      value = B58.indexOf(text[i]);
      if (value < 0) fail("SIGNATURE", "bad base58 in " + did);
      carry = value;
      for (j = 0; j < digits.length; j++) {
        carry += digits[j] * 58;
        digits[j] = carry & 255;
        carry >>= 8;
      }
      while (carry) {
        digits.push(carry & 255);
        carry >>= 8;
      }
    }
    for (i = 0; i < text.length && text[i] === "1"; i++) digits.push(0);
    var raw = new Uint8Array(digits.reverse());
    while (raw.length > 34 && raw[0] === 0) raw = raw.slice(1); // the [0] seed digit
    if (raw.length !== 34 || raw[0] !== 0xed || raw[1] !== 0x01) {
      fail("SIGNATURE", "signer " + did + " is not an Ed25519 did:key");
    }
    return raw.slice(2);
  }

  // --- SHA-256 (synchronous: a chain of 20,000 links cannot wait on a promise each) ----------

  var K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  var W = new Uint32Array(64);

  function sha256(data) {
    var bits = data.length * 8;
    var padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6);
    padded.set(data);
    padded[data.length] = 0x80;
    var view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(padded.length - 4, bits >>> 0);
    var h0 = 0x6a09e667, h1 = 0xbb67ae85, h2 = 0x3c6ef372, h3 = 0xa54ff53a;
    var h4 = 0x510e527f, h5 = 0x9b05688c, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
    for (var off = 0; off < padded.length; off += 64) {
      var i, a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7, t1, t2, x, y;
      for (i = 0; i < 16; i++) W[i] = view.getUint32(off + i * 4);
      for (i = 16; i < 64; i++) {
        x = W[i - 15];
        y = W[i - 2];
        W[i] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
          W[i - 7] + (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) + W[i - 16];
      }
      for (i = 0; i < 64; i++) {
        t1 = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
          ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
        t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
          ((a & b) ^ (a & c) ^ (b & c))) | 0;
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
      h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
    }
    var out = new Uint8Array(32), outView = new DataView(out.buffer);
    [h0, h1, h2, h3, h4, h5, h6, h7].forEach(function (word, n) { outView.setUint32(n * 4, word >>> 0); });
    return out;
  }

  // --- RFC 8785 (JCS) -------------------------------------------------------------------------

  /** Canonical JSON text: keys sorted by UTF-16 code units, ECMAScript numbers and strings. */
  function jcs(value) {
    if (value === null || typeof value === "boolean" || typeof value === "string") {
      return JSON.stringify(value);
    }
    if (typeof value === "number") {
      if (!isFinite(value)) fail("FORMAT", "a number that JSON cannot carry");
      return JSON.stringify(value);
    }
    if (Array.isArray(value)) return "[" + value.map(jcs).join(",") + "]";
    var keys = Object.keys(value).sort();
    return "{" + keys.map(function (key) { return JSON.stringify(key) + ":" + jcs(value[key]); }).join(",") + "}";
  }

  // --- Merkle trees (RFC 9162) ----------------------------------------------------------------

  function hashLeaf(data) {
    return sha256(concat([new Uint8Array([0]), data]));
  }

  function hashChildren(left, right) {
    return sha256(concat([new Uint8Array([1]), left, right]));
  }

  function bitLength(n) { // n < 2**53
    var bits = 0;
    while (n > 0) {
      bits++;
      n = Math.floor(n / 2);
    }
    return bits;
  }

  function rootFromInclusionProof(index, size, leafHash, proof) {
    if (!(index >= 0 && index < size)) fail("INCLUSION", "leaf index " + index + " is out of range for tree size " + size);
    // inner = bit length of index XOR (size - 1); border = ones of index >> inner
    var inner, xor = [], x = index, y = size - 1;
    while (x > 0 || y > 0) {
      xor.push((x % 2) !== (y % 2));
      x = Math.floor(x / 2);
      y = Math.floor(y / 2);
    }
    inner = xor.lastIndexOf(true) + 1;
    var border = 0, rest = Math.floor(index / Math.pow(2, inner));
    while (rest > 0) {
      border += rest % 2;
      rest = Math.floor(rest / 2);
    }
    if (proof.length !== inner + border) {
      fail("INCLUSION", "inclusion proof for index " + index + " in tree size " + size + " has " +
        proof.length + " hashes, want " + (inner + border));
    }
    var h = leafHash, bitsOf = index;
    for (var i = 0; i < inner; i++) {
      h = bitsOf % 2 ? hashChildren(proof[i], h) : hashChildren(h, proof[i]);
      bitsOf = Math.floor(bitsOf / 2);
    }
    for (i = inner; i < inner + border; i++) h = hashChildren(proof[i], h);
    return h;
  }

  function verifyInclusion(index, size, leafHash, proof, root, what) {
    if (!equal(rootFromInclusionProof(index, size, leafHash, proof), root)) {
      fail("INCLUSION", what + ": the inclusion proof leads to another root");
    }
  }

  // --- Ed25519 through WebCrypto --------------------------------------------------------------

  // RFC 8032 §7.1, test 1: an empty message.
  var PROBE_KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
  var PROBE_SIG = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

  function fromHex(text) {
    var out = new Uint8Array(text.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(text.substr(i * 2, 2), 16);
    return out;
  }

  /** A verifier, or null when this browser has no Ed25519 in WebCrypto (then the page says so). */
  function ed25519() {
    var subtle = root.crypto && root.crypto.subtle;
    if (!subtle || typeof subtle.importKey !== "function") return Promise.resolve(null);
    var keys = {};
    function key(raw) {
      var id = hex(raw);
      if (!keys[id]) keys[id] = subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
      return keys[id];
    }
    function verify(raw, signature, message) {
      if (signature.length !== 64) return Promise.resolve(false);
      return key(raw).then(function (k) {
        return subtle.verify({ name: "Ed25519" }, k, signature, message);
      });
    }
    return verify(fromHex(PROBE_KEY), fromHex(PROBE_SIG), new Uint8Array(0)).then(
      function (ok) { return ok ? { verify: verify } : null; },
      function () { return null; }
    );
  }

  // --- signed notes, checkpoints, policy (C2SP) -----------------------------------------------

  function splitNote(note) {
    if (typeof note !== "string") fail("CHECKPOINT", "the checkpoint note is not text");
    if (/[\x00-\x09\x0b-\x1f]/.test(note)) fail("CHECKPOINT", "malformed note: a control character");
    var split = note.lastIndexOf("\n\n");
    if (split < 0) fail("CHECKPOINT", "malformed note: no blank line before the signatures");
    var body = note.slice(0, split + 1), block = note.slice(split + 2);
    if (!block || block[block.length - 1] !== "\n") fail("CHECKPOINT", "malformed note: no signature lines");
    var lines = block.slice(0, -1).split("\n");
    if (lines.length > MAX_SIGNATURES) fail("CHECKPOINT", "malformed note: too many signature lines");
    return { body: body, lines: lines };
  }

  function parseCheckpoint(body) {
    var lines = body.slice(0, -1).split("\n");
    if (lines.length < 3 || !lines[0]) fail("CHECKPOINT", "the note is not a checkpoint");
    if (!/^(0|[1-9][0-9]{0,15})$/.test(lines[1])) fail("CHECKPOINT", "checkpoint size is not a decimal");
    var root = b64decode(lines[2], "checkpoint root");
    if (root.length !== 32) fail("CHECKPOINT", "checkpoint root is not 32 bytes");
    var heads = null;
    lines.slice(3).forEach(function (line) {
      if (!line) fail("CHECKPOINT", "empty extension line");
      var parts = line.split(" ");
      if (parts[0] !== "provenance-heads" && parts[0] !== "provenance-heads/v2") return;
      if (heads) fail("CHECKPOINT", "checkpoint has more than one heads line");
      if (parts.length !== 3 || !/^(0|[1-9][0-9]*)$/.test(parts[1])) fail("CHECKPOINT", "malformed heads line");
      var headsRoot = b64decode(parts[2], "heads root");
      if (headsRoot.length !== 32) fail("CHECKPOINT", "heads root is not 32 bytes");
      heads = { sorted: parts[0] === "provenance-heads/v2", count: Number(parts[1]), root: headsRoot };
    });
    if (!heads) fail("CHECKPOINT", "checkpoint has no provenance-heads line: not made by a Provenance ledger");
    return { origin: lines[0], size: Number(lines[1]), root: root, heads: heads, body: body };
  }

  function keyId(name, type, key) {
    return sha256(concat([utf8(name), new Uint8Array([0x0a, type]), key])).slice(0, 4);
  }

  function parseVerifierKey(text, type, line) {
    var first = text.indexOf("+"), second = text.indexOf("+", first + 1);
    var parts = first < 0 || second < 0 ? [] : [text.slice(0, first), text.slice(first + 1, second), text.slice(second + 1)];
    if (parts.length !== 3) fail("POLICY", "line " + line + ": a key is <name>+<key id>+<base64>");
    var raw = b64decode(parts[2], "policy line " + line);
    if (raw.length !== 33 || raw[0] !== type) fail("POLICY", "line " + line + ": not an Ed25519 key of type " + type);
    var key = raw.slice(1);
    if (hex(keyId(parts[0], type, key)) !== parts[1].toLowerCase()) {
      fail("POLICY", "line " + line + ": key id does not match name and key");
    }
    return { keyName: parts[0], key: key, text: text };
  }

  /** A C2SP tlog-policy (log / witness / group / quorum lines). */
  function parsePolicy(text) {
    var policy = { logs: [], witnesses: {}, order: [], groups: {}, quorum: null };
    if (/[\x00-\x08\x0b-\x1f]/.test(text)) fail("POLICY", "the policy holds a control character");
    text.split("\n").forEach(function (raw, at) {
      var line = at + 1, words = raw.replace(/#.*/, "").trim().split(/[ \t]+/);
      if (!words[0]) return;
      var known = function (name) {
        return name === "none" || policy.witnesses[name] || policy.groups[name];
      };
      if (words[0] === "log") {
        if (words.length < 2 || words.length > 3) fail("POLICY", "line " + line + ": log <vkey> [url]");
        policy.logs.push(parseVerifierKey(words[1], 0x01, line));
      } else if (words[0] === "witness") {
        if (words.length < 3 || words.length > 4) fail("POLICY", "line " + line + ": witness <name> <vkey> [url]");
        if (known(words[1])) fail("POLICY", "line " + line + ": " + words[1] + " is defined twice");
        var witness = parseVerifierKey(words[2], 0x04, line);
        witness.name = words[1];
        witness.kid = keyId(witness.keyName, 0x04, witness.key);
        policy.witnesses[words[1]] = witness;
        policy.order.push(words[1]);
      } else if (words[0] === "group") {
        if (words.length < 4 || known(words[1])) fail("POLICY", "line " + line + ": group <name> all|any|<k> <member>…");
        var members = words.slice(3), threshold;
        members.forEach(function (m) {
          if (m === "none" || !known(m)) fail("POLICY", "line " + line + ": unknown member " + m);
        });
        if (words[2] === "all") threshold = members.length;
        else if (words[2] === "any") threshold = 1;
        else if (/^[1-9][0-9]*$/.test(words[2]) && Number(words[2]) <= members.length) threshold = Number(words[2]);
        else fail("POLICY", "line " + line + ": threshold must be all, any or 1…" + members.length);
        policy.groups[words[1]] = { threshold: threshold, members: members };
      } else if (words[0] === "quorum") {
        if (words.length !== 2 || policy.quorum !== null || !known(words[1])) {
          fail("POLICY", "line " + line + ": one quorum line naming none, a witness or a group");
        }
        policy.quorum = words[1];
      } else {
        fail("POLICY", "line " + line + ": unknown keyword " + words[0].slice(0, 40));
      }
    });
    if (policy.quorum === null) fail("POLICY", "the policy has no quorum line");
    if (!policy.logs.length) fail("POLICY", "the policy lists no log");
    return policy;
  }

  function witnessed(policy, item, cosigned) {
    if (item === "none") return true;
    if (policy.witnesses[item]) return Object.prototype.hasOwnProperty.call(cosigned, item);
    var group = policy.groups[item], count = 0;
    group.members.forEach(function (m) { if (witnessed(policy, m, cosigned)) count++; });
    return count >= group.threshold;
  }

  function claimedKey(line) {
    if (line.indexOf(SIG_PREFIX) !== 0) return null;
    var rest = line.slice(SIG_PREFIX.length), space = rest.indexOf(" ");
    if (space <= 0) return null;
    var name = rest.slice(0, space), raw;
    if (/[+\s]/.test(name)) return null;
    try {
      raw = b64decode(rest.slice(space + 1), "signature");
    } catch (e) {
      return null;
    }
    if (raw.length <= 4) return null;
    return { name: name, kid: raw.slice(0, 4), raw: raw };
  }

  /** How a checkpoint note fares against a policy (provenance/core/policy.py `evaluate`). */
  function evaluate(note, policy, ed, nowSeconds) {
    var split = splitNote(note), checkpoint = parseCheckpoint(split.body);
    var message = utf8(split.body), verdict = {
      checkpoint: checkpoint, log: null, logKey: null, cosigned: {}, missing: [], wrong: [], unknown: []
    };
    var logs = policy.logs.filter(function (log) { return log.keyName === checkpoint.origin; });
    var logFailed = false;
    var checks = split.lines.map(function (line, at) {
      var number = at + 1, claim = claimedKey(line);
      if (!claim) {
        verdict.wrong.push({ number: number, name: "", reason: "malformed signature line" });
        return Promise.resolve();
      }
      var log = logs.filter(function (l) { return equal(keyId(l.keyName, 0x01, l.key), claim.kid); })[0];
      if (log && claim.name === log.keyName) {
        return ed.verify(log.key, claim.raw.slice(4), message).then(function (ok) {
          if (!ok) {
            logFailed = true;
            verdict.wrong.push({ number: number, name: claim.name, reason: "the log's signature does not verify" });
          } else if (!verdict.log) {
            verdict.log = log.keyName;
            verdict.logKey = log;
          }
        });
      }
      var witness = policy.order.map(function (n) { return policy.witnesses[n]; }).filter(function (w) {
        return w.keyName === claim.name && equal(w.kid, claim.kid);
      })[0];
      if (!witness) {
        verdict.unknown.push({ number: number, name: claim.name });
        return Promise.resolve();
      }
      var bad = function (reason) {
        verdict.wrong.push({ number: number, name: claim.name, witness: witness.name, reason: reason });
      };
      if (claim.raw.length !== 76) return Promise.resolve(bad("not a timestamped cosignature"));
      var stamp = new DataView(claim.raw.buffer, claim.raw.byteOffset + 4, 8);
      var time = stamp.getUint32(0) * 0x100000000 + stamp.getUint32(4);
      if (time === 0) return Promise.resolve(bad("timestamp 0"));
      if (nowSeconds !== undefined && time > nowSeconds + 600) return Promise.resolve(bad("dated in the future"));
      var signed = concat([utf8("cosignature/v1\ntime " + time + "\n"), message]);
      return ed.verify(witness.key, claim.raw.slice(12), signed).then(function (ok) {
        if (!ok) bad("the cosignature does not verify");
        else if (!Object.prototype.hasOwnProperty.call(verdict.cosigned, witness.name)) verdict.cosigned[witness.name] = time;
      });
    });
    return Promise.all(checks).then(function () {
      verdict.wrong.forEach(function (problem) {
        if (problem.witness) delete verdict.cosigned[problem.witness];
      });
      if (logFailed) verdict.log = null;
      verdict.missing = policy.order.filter(function (n) { return !(n in verdict.cosigned); });
      verdict.quorumMet = witnessed(policy, policy.quorum, verdict.cosigned);
      verdict.problems = [];
      if (!verdict.log) {
        verdict.problems.push(logs.length ?
          "the checkpoint is not signed by the log key the policy lists for " + checkpoint.origin :
          "the checkpoint is from log " + checkpoint.origin.slice(0, 80) + ", which the policy does not list");
      }
      if (!verdict.quorumMet) {
        verdict.problems.push("the witnesses' quorum is not met: missing " + (verdict.missing.join(", ") || "none") +
          " (cosigned by " + (Object.keys(verdict.cosigned).join(", ") || "none") + ")");
      }
      verdict.wrong.forEach(function (p) { verdict.problems.push("signature line " + p.number + " (" + (p.name || "?") + "): " + p.reason); });
      verdict.ok = verdict.problems.length === 0;
      return verdict;
    });
  }

  // --- proof bundles (provenance/core/bundle.py `verify_bundle`) -------------------------------

  var TIME = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z$/;

  function timeMicros(text) {
    var m = TIME.exec(text);
    if (!m) fail("FORMAT", "time " + String(text).slice(0, 40) + " is not RFC 3339 UTC");
    var ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
    return ms * 1000 + Number(((m[7] || "") + "000000").slice(0, 6));
  }

  function integer(value, what) {
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      fail("FORMAT", what + " is not a non-negative integer");
    }
    return value;
  }

  function onlyKeys(object, allowed, what) {
    if (!object || typeof object !== "object" || Array.isArray(object)) fail("FORMAT", what + " is not an object");
    Object.keys(object).forEach(function (key) {
      if (allowed.indexOf(key) < 0) fail("FORMAT", what + " has an unknown field " + key.slice(0, 40));
    });
  }

  function parseTlogProof(text, index, where) {
    if (typeof text !== "string" || text.indexOf("\r") >= 0) fail("INCLUSION", where + ": malformed tlog-proof");
    var split = text.indexOf("\n\n");
    if (split < 0) fail("INCLUSION", where + ": tlog-proof has no checkpoint");
    var lines = text.slice(0, split).split("\n"), note = text.slice(split + 2), at = 1;
    if (lines[0] !== "c2sp.org/tlog-proof@v1") fail("INCLUSION", where + ": not a c2sp.org/tlog-proof@v1");
    if (lines[at] && lines[at].indexOf("extra ") === 0) at++;
    if (!lines[at] || lines[at] !== "index " + index) fail("INCLUSION", where + ": the tlog-proof is not for index " + index);
    return {
      proof: lines.slice(at + 1).map(function (line) {
        var digest = b64decode(line, where + ": tlog-proof hash");
        if (digest.length !== 32) fail("INCLUSION", where + ": tlog-proof hash is not 32 bytes");
        return digest;
      }),
      note: note
    };
  }

  function hashes(list, what) {
    if (!Array.isArray(list)) fail("FORMAT", what + " is not a list of base64 hashes");
    return list.map(function (h) {
      var digest = b64decode(h, what);
      if (digest.length !== 32) fail("FORMAT", what + ": a hash is 32 bytes");
      return digest;
    });
  }

  var ENVELOPE_FIELDS = ["v", "kind", "signer", "seq", "time", "batches", "data", "sig"];

  function openEnvelope(raw, where) {
    onlyKeys(raw, ENVELOPE_FIELDS, where);
    if ((raw.v !== 1 && raw.v !== 2) || typeof raw.kind !== "string" || typeof raw.sig !== "string" ||
        !raw.data || typeof raw.data !== "object") {
      fail("FORMAT", where + ": not a version 1 or 2 envelope");
    }
    // v2 (docs/protocol.md §14): data keeps fields private as digests in data._sd,
    // which are signed like any other data; v is 2 exactly when data has _sd.
    if ((raw.v === 2) !== Array.isArray(raw.data._sd)) {
      fail("FORMAT", where + ": v 2 goes with data._sd (private fields), v 1 without");
    }
    var unsigned = {};
    Object.keys(raw).forEach(function (key) { if (key !== "sig") unsigned[key] = raw[key]; });
    var whole = utf8(jcs(raw)), signature = b64urlDecode(raw.sig, where + ": sig");
    if (signature.length !== 64) fail("SIGNATURE", where + ": a signature is 64 bytes");
    return {
      kind: raw.kind, signer: raw.signer, time: raw.time, data: raw.data,
      key: didKey(raw.signer), signature: signature, message: utf8(jcs(unsigned)),
      id: sha256(whole)
    };
  }

  function genesisLink(subject) {
    var domain = subject.indexOf("did:") === 0 ? "provenance/v1/identity" : "provenance/v1/batch";
    return sha256(utf8(domain + subject));
  }

  function sortedEntry(key, length, head) {
    var size = new Uint8Array(8), view = new DataView(size.buffer);
    view.setUint32(0, Math.floor(length / 0x100000000));
    view.setUint32(4, length >>> 0);
    return concat([key, size, head]);
  }

  function checkChain(chain, note, checkpoint) {
    var link = genesisLink(chain.subject), previous = -1, body = note.slice(0, note.lastIndexOf("\n\n") + 1);
    chain.events.forEach(function (event) {
      var where = chain.subject + ": event " + hex(event.envelope.id) + " (log index " + event.index + ")";
      if (event.index <= previous) fail("CHAIN", where + ": out of log order");
      if (event.index >= checkpoint.size) fail("CHAIN", where + ": beyond the checkpoint (size " + checkpoint.size + ")");
      if (!event.valid) fail("SIGNATURE", where + ": its signature does not verify");
      if (event.proof !== undefined) {
        var proof = parseTlogProof(event.proof, event.index, where);
        if (proof.note.slice(0, proof.note.lastIndexOf("\n\n") + 1) !== body) {
          fail("INCLUSION", where + ": its tlog-proof carries another checkpoint");
        }
        verifyInclusion(event.index, checkpoint.size, hashLeaf(event.envelope.id), proof.proof, checkpoint.root,
          where + " is not in the log as signed");
        event.proven = true;
      }
      if (chain.ids) checkPlace(chain, event, where);
      else link = sha256(concat([link, event.envelope.id]));
      previous = event.index;
    });
    if (chain.events.length && !chain.events[chain.events.length - 1].proven) {
      fail("INCLUSION", chain.subject + ": the chain's newest event carries no tlog-proof");
    }
    if (chain.ids) {
      var last = chain.events[chain.events.length - 1];
      if (!last || last.at !== chain.count - 1) fail("INCLUSION", chain.subject + ": the chain's newest event is not in the bundle");
      for (var i = 0; i < chain.count; i++) link = sha256(concat([link, chain.ids.subarray(i * 32, i * 32 + 32)]));
    }
    var heads = checkpoint.heads, length = chain.ids ? chain.count : chain.events.length, mismatch = chain.subject + ": the bundle's " +
      length + " events do not match the chain head the checkpoint commits to — events were left out, added or changed";
    if (!heads.sorted) {
      if (chain.left || chain.right) fail("HEADS", chain.subject + ": neighbours in a creation-order heads tree");
      var entry = utf8(chain.subject + "\n" + length + "\n" + hex(link));
      try {
        verifyInclusion(chain.position, heads.count, hashLeaf(entry), chain.headsProof, heads.root, "");
      } catch (e) {
        fail("HEADS", mismatch);
      }
      return;
    }
    var key = genesisLink(chain.subject);
    try {
      verifyInclusion(chain.position, heads.count, hashLeaf(sortedEntry(key, length, link)), chain.headsProof, heads.root, "");
    } catch (e) {
      fail("HEADS", mismatch);
    }
    [["left", chain.left, chain.position - 1], ["right", chain.right, chain.position + 1]].forEach(function (side) {
      var name = side[0], neighbour = side[1], at = side[2];
      if (!(at >= 0 && at < heads.count)) {
        if (neighbour) fail("HEADS", chain.subject + ": a " + name + " neighbour beyond the heads tree's end");
        return;
      }
      if (!neighbour) fail("HEADS", chain.subject + ": the bundle lacks the " + name + " neighbour of its chain, so it cannot show this is the only chain");
      if (neighbour.entry.length !== 72) fail("HEADS", chain.subject + ": a heads entry is 72 bytes");
      try {
        verifyInclusion(at, heads.count, hashLeaf(neighbour.entry), neighbour.proof, heads.root, "");
      } catch (e) {
        fail("HEADS", chain.subject + ": the " + name + " neighbour of its chain is not in the heads tree as signed");
      }
      var theirs = neighbour.entry.slice(0, 32);
      if (name === "left" ? !less(theirs, key) : !less(key, theirs)) {
        fail("HEADS", chain.subject + ": a second chain for this subject is in the heads tree — the bundle cannot show the lot's one history");
      }
    });
  }

  /** A page-form event: at a later place than the one before, and its id the chain's there. */
  function checkPlace(chain, event, where) {
    if (event.at >= chain.count || (chain.lastAt !== undefined && event.at <= chain.lastAt)) {
      fail("CHAIN", where + ": out of chain order");
    }
    if (!equal(event.envelope.id, chain.ids.subarray(event.at * 32, event.at * 32 + 32))) {
      fail("CHAIN", where + ": it is not the event the chain holds at place " + event.at);
    }
    chain.lastAt = event.at;
  }

  function parseChain(raw, compact) {
    onlyKeys(raw, compact ? ["subject", "count", "ids", "events", "heads"] : ["subject", "events", "heads"], "a bundle chain");
    if (typeof raw.subject !== "string" || !Array.isArray(raw.events)) fail("FORMAT", "a bundle chain needs a subject and events");
    onlyKeys(raw.heads, ["position", "proof", "left", "right"], raw.subject + ": heads");
    var neighbour = function (value, what) {
      if (value === undefined || value === null) return null;
      onlyKeys(value, ["entry", "proof"], what);
      return { entry: b64decode(value.entry, what), proof: hashes(value.proof, what) };
    };
    var ids = null, count;
    if (compact) {
      count = integer(raw.count, raw.subject + ": count");
      ids = b64decode(raw.ids, raw.subject + ": ids");
      if (ids.length !== 32 * count) fail("FORMAT", raw.subject + ": ids are not " + count + " event ids");
    }
    return {
      subject: raw.subject,
      ids: ids,
      count: count,
      events: raw.events.map(function (item) {
        onlyKeys(item, compact ? ["index", "envelope", "proof", "at"] : ["index", "envelope", "proof"], raw.subject + ": an event");
        var index = integer(item.index, raw.subject + ": event index");
        var at = compact ? integer(item.at, raw.subject + ": event place") : undefined;
        return { index: index, at: at, raw: item.envelope, proof: item.proof, valid: false };
      }),
      position: integer(raw.heads.position, raw.subject + ": heads position"),
      headsProof: hashes(raw.heads.proof, "heads proof"),
      left: neighbour(raw.heads.left, "heads left neighbour"),
      right: neighbour(raw.heads.right, "heads right neighbour")
    };
  }

  function nextTurn() {
    return new Promise(function (resolve) { setTimeout(resolve, 0); });
  }

  /** Check every envelope's signature, a batch per turn so the page stays responsive. */
  function checkSignatures(events, ed, progress) {
    var at = 0;
    function batch() {
      var slice = events.slice(at, at + SIGNATURE_BATCH);
      if (!slice.length) return Promise.resolve();
      return Promise.all(slice.map(function (event) {
        return ed.verify(event.envelope.key, event.envelope.signature, event.envelope.message).then(
          function (ok) { event.valid = ok; }, function () { event.valid = false; });
      })).then(function () {
        at += slice.length;
        if (progress) progress(at, events.length);
        return nextTurn().then(batch);
      });
    }
    return batch();
  }

  function identityOf(chain, registrar) {
    if (!chain.events.length) fail("SIGNER", chain.subject + ": identity chain is empty");
    var first = chain.events[0], enrol = first.envelope;
    if (enrol.kind === "rotate") {
      fail("UNSUPPORTED", chain.subject + ": a key rotation, which this page does not check; use the offline check");
    }
    if (enrol.kind !== "enrol" || enrol.data.subject !== chain.subject) {
      fail("SIGNER", chain.subject + ": chain does not start with its enrolment");
    }
    var info = {
      type: enrol.data.type, name: enrol.data.name, role: enrol.data.role, enrolledAt: first.index
    };
    chain.events.forEach(function (event, position) {
      var envelope = event.envelope, where = chain.subject + ": event at log index " + event.index;
      if (!event.proven) fail("SIGNER", where + ": a registry event without its tlog-proof");
      if (envelope.kind === "rotate") fail("UNSUPPORTED", where + ": a key rotation, which this page does not check");
      if (envelope.signer !== registrar) fail("SIGNER", where + ": registry events must be signed by the registrar");
      if (position && envelope.kind === "revoke") {
        if (info.revokedFrom === undefined) {
          info.revokedFrom = envelope.data.from;
          info.revokedFromUs = timeMicros(envelope.data.from);
          info.revokedAt = event.index;
        }
      } else if (position) {
        fail("SIGNER", where + ": unexpected " + envelope.kind + " in an identity chain");
      }
    });
    return info;
  }

  /**
   * Check a provenance-bundle/v2 (parsed JSON) against a policy, with `ed` from
   * `ed25519()`. Resolves to a report; rejects with a VerificationError naming the step.
   */
  function verifyBundle(bundle, policy, ed, options) {
    options = options || {};
    var report = { warnings: [], steps: [] };
    return Promise.resolve().then(function () {
      if (!bundle || (bundle.format !== BUNDLE_FORMAT && bundle.format !== PAGE_FORMAT)) {
        fail("FORMAT", "not a " + BUNDLE_FORMAT + " proof bundle");
      }
      onlyKeys(bundle, ["format", "subject", "checkpoint", "chains", "consistency"], "the bundle");
      if (typeof bundle.checkpoint !== "string") fail("FORMAT", "the bundle has no checkpoint");
      if ("consistency" in bundle && (!bundle.consistency || typeof bundle.consistency !== "object" ||
                                      Array.isArray(bundle.consistency))) {
        fail("FORMAT", 'bundle `consistency` must be {"size": N, "proof": [...]}');
      }
      return evaluate(bundle.checkpoint, policy, ed, options.nowSeconds);
    }).then(function (verdict) {
      report.verdict = verdict;
      if (!verdict.ok) fail("CHECKPOINT", verdict.problems.join("; "));
      var checkpoint = verdict.checkpoint;
      report.checkpoint = checkpoint;
      if (!Array.isArray(bundle.chains) || !bundle.chains.length) fail("FORMAT", "the bundle has no chains");
      var compact = bundle.format === PAGE_FORMAT;
      var chains = bundle.chains.map(function (raw, n) { return parseChain(raw, compact && n === 0); });
      var bySubject = {}, all = [];
      chains.forEach(function (chain) {
        if (bySubject[chain.subject]) fail("FORMAT", "the bundle lists a chain twice");
        bySubject[chain.subject] = chain;
        chain.events.forEach(function (event) {
          event.envelope = openEnvelope(event.raw, chain.subject + ": event at log index " + event.index);
          all.push(event);
        });
      });
      report.chains = chains;
      report.bySubject = bySubject;
      report.events = all.length;
      return checkSignatures(all, ed, options.progress);
    }).then(function () {
      var checkpoint = report.checkpoint, chains = report.chains, note = bundle.checkpoint;
      chains.forEach(function (chain) { checkChain(chain, note, checkpoint); });
      if (!checkpoint.heads.sorted) {
        report.warnings.push("the checkpoint was signed before the heads tree was sorted: this bundle cannot rule out a second chain for the lot");
      }
      var registrarChain = chains.filter(function (c) { return c.events.length && c.events[0].index === 0; })[0];
      if (!registrarChain || !registrarChain.events[0].proven) fail("SIGNER", "the bundle lacks the registrar's enrolment (log leaf 0)");
      var genesis = registrarChain.events[0].envelope;
      if (!(genesis.kind === "enrol" && genesis.data.type === "registrar" &&
            genesis.data.subject === genesis.signer && genesis.signer === registrarChain.subject)) {
        fail("SIGNER", "log leaf 0 is not the registrar's self-enrolment");
      }
      var signers = {};
      chains.forEach(function (chain) {
        if (chain.subject.indexOf("did:") === 0) signers[chain.subject] = identityOf(chain, genesis.signer);
      });
      var lot = typeof bundle.subject === "string" && bundle.subject.indexOf("did:") !== 0 && report.bySubject[bundle.subject];
      if (!lot) fail("FORMAT", "the bundle does not carry the chain of its subject lot");
      var checkSigner = function (event) {
        var envelope = event.envelope, where = "event " + hex(envelope.id) + " (log index " + event.index + ")";
        var signer = signers[envelope.signer];
        if (!signer) fail("SIGNER", where + ": the bundle lacks the enrolment of its signer");
        if (signer.enrolledAt >= event.index) fail("SIGNER", where + ": signed by " + signer.name + " before it was enrolled");
        var role = signer.type === "party" ? signer.role : signer.type;
        if ((SIGNER_ROLES[envelope.kind] || []).indexOf(role) < 0) fail("SIGNER", where + ": a " + role + " may not sign " + envelope.kind);
        if (signer.revokedFromUs !== undefined && timeMicros(envelope.time) >= signer.revokedFromUs) {
          if (signer.revokedAt < event.index) fail("SIGNER", where + ": signed with a key revoked from " + signer.revokedFrom);
          report.warnings.push(where + " is dated after " + signer.name + "'s key was revoked; the revocation was logged later");
        }
      };
      if (lot.ids && lot !== chains[0]) fail("FORMAT", "only the lot's chain may leave events out");
      lot.events.forEach(checkSigner);
      report.subject = bundle.subject;
      report.lotEvents = lot.ids ? lot.count : lot.events.length;
      report.signers = signers;
      if (!lot.ids) return report;
      return checkSample(lot, report, ed, options, checkSigner);
    });
  }

  /**
   * A page-form lot: draw places among the events left out (readings), after the
   * chain's ids are known, fetch those events and check each in full: its id is the
   * chain's at that place, it is a reading, its signature and its signer.
   */
  function checkSample(lot, report, ed, options, checkSigner) {
    var present = {}, left = [], i;
    lot.events.forEach(function (event) { present[event.at] = true; });
    for (i = 0; i < lot.count; i++) if (!present[i]) left.push(i);
    var want = Math.min(SAMPLE, left.length), picks = [], random = new Uint32Array(want);
    root.crypto.getRandomValues(random);
    for (i = 0; i < want; i++) { // a partial Fisher-Yates shuffle
      var j = i + (random[i] % (left.length - i)), swap = left[i];
      left[i] = left[j];
      left[j] = swap;
      picks.push(left[i]);
    }
    picks.sort(function (a, b) { return a - b; });
    report.leftOut = left.length;
    report.sampled = picks.length;
    if (!picks.length) return Promise.resolve(report);
    if (!options.sample) fail("UNSUPPORTED", "this bundle leaves readings out and no sample can be fetched");
    return options.sample(picks).then(function (answer) {
      if (!answer || !Array.isArray(answer.events) || answer.events.length !== picks.length) {
        fail("FORMAT", "the server did not send the readings this phone asked for");
      }
      var events = answer.events.map(function (item, n) {
        onlyKeys(item, ["at", "index", "envelope", "proof"], "a sampled event");
        if (item.at !== picks[n]) fail("FORMAT", "the server sent another reading than the one asked for");
        var where = lot.subject + ": event at place " + item.at;
        var event = { at: item.at, index: integer(item.index, where), envelope: openEnvelope(item.envelope, where) };
        if (!equal(event.envelope.id, lot.ids.subarray(item.at * 32, item.at * 32 + 32))) {
          fail("CHAIN", where + ": it is not the event the chain holds there");
        }
        if (event.envelope.kind !== "reading") {
          fail("CHAIN", where + ": a " + event.envelope.kind + " event the page form left out as a reading");
        }
        if (event.index >= report.checkpoint.size) fail("CHAIN", where + ": beyond the checkpoint");
        return event;
      });
      return checkSignatures(events, ed).then(function () {
        events.forEach(function (event) {
          if (!event.valid) fail("SIGNATURE", lot.subject + ": the reading at place " + event.at + ": its signature does not verify");
          checkSigner(event);
        });
        return report;
      });
    });
  }

  // --- the policy pinned on this phone --------------------------------------------------------

  function fingerprint(policyText) {
    var digest = hex(sha256(utf8(policyText))).slice(0, 16);
    return digest.match(/..../g).join(" ");
  }

  var PIN_PREFIX = "provenance.policy:";

  /** {state: "first" | "same" | "changed", pinned} — and pins the policy on first use. */
  function pin(storage, origin, policyText) {
    var key = PIN_PREFIX + origin, fp = fingerprint(policyText), stored = null;
    try {
      stored = JSON.parse(storage.getItem(key) || "null");
    } catch (e) {
      stored = null;
    }
    if (!stored || typeof stored.fingerprint !== "string") {
      try {
        storage.setItem(key, JSON.stringify({ fingerprint: fp, policy: policyText, since: new Date().toISOString() }));
      } catch (e) { /* private mode: nothing pinned, said on the page */ }
      return { state: "first", fingerprint: fp };
    }
    return { state: stored.fingerprint === fp ? "same" : "changed", fingerprint: fp, pinned: stored };
  }

  function repin(storage, origin, policyText) {
    storage.setItem(PIN_PREFIX + origin, JSON.stringify({
      fingerprint: fingerprint(policyText), policy: policyText, since: new Date().toISOString()
    }));
  }

  // --- the panel on the scan page -------------------------------------------------------------

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function words(panel, name) {
    var node = panel.querySelector('template[data-words] [data-w="' + name + '"]') ||
      (panel.querySelector("template[data-words]") &&
       panel.querySelector("template[data-words]").content.querySelector('[data-w="' + name + '"]'));
    return node ? node.textContent : name;
  }

  function say(panel, name, values) {
    var text = words(panel, name);
    Object.keys(values || {}).forEach(function (key) { text = text.split("{" + key + "}").join(values[key]); });
    return text;
  }

  function show(panel, state, lines, extra) {
    var out = panel.querySelector("[data-phone-result]");
    out.textContent = "";
    panel.setAttribute("data-state", state);
    panel.className = "phone-check phone-" + state;
    out.appendChild(element("p", "phone-verdict", say(panel, state)));
    if (lines.length) {
      var list = element("ul", "checks");
      lines.forEach(function (line) { list.appendChild(element("li", line[1] || "", line[0])); });
      out.appendChild(list);
    }
    if (extra) out.appendChild(extra);
  }

  function keyLines(panel, report, fp) {
    var lines = [], verdict = report.verdict, checkpoint = report.checkpoint;
    lines.push(["\u2713 " + say(panel, "signatures", { n: report.events + (report.sampled || 0) })]);
    if (report.leftOut) {
      lines.push(["\u2713 " + say(panel, "sampled", { k: report.sampled, n: report.leftOut })]);
    }
    lines.push(["\u2713 " + say(panel, "chain", { n: report.lotEvents })]);
    lines.push(["\u2713 " + say(panel, "included", { size: checkpoint.size, origin: checkpoint.origin })]);
    lines.push(["\u2713 " + say(panel, "logkey", { name: verdict.logKey.keyName, id: hex(keyId(verdict.logKey.keyName, 1, verdict.logKey.key)) })]);
    Object.keys(verdict.cosigned).forEach(function (name) {
      var w = report.policy.witnesses[name];
      lines.push(["\u2713 " + say(panel, "witness", { name: name, id: hex(w.kid) })]);
    });
    verdict.missing.forEach(function (name) { lines.push(["\u2026 " + say(panel, "notcosigned", { name: name }), "small"]); });
    lines.push([say(panel, "fingerprint", { fp: fp }), "fingerprint"]);
    report.warnings.forEach(function (w) { lines.push([w, "warn"]); });
    return lines;
  }

  /** A fetch that failed is "could not check" (a lot newer than the witnessed checkpoint
   *  has no bundle yet; a phone may be offline), never "verified". */
  function fetchText(url) {
    return fetch(url, { credentials: "omit", cache: "no-cache" }).then(function (response) {
      if (!response.ok) throw VerificationError("FETCH", "could not fetch " + url.split("?")[0] + " (" + response.status + ")");
      return response.text();
    }, function (error) {
      throw VerificationError("FETCH", "could not fetch " + url.split("?")[0] + ": " + error.message);
    });
  }

  function parseJSON(text, what) {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw VerificationError("FORMAT", what + " is not JSON");
    }
  }

  function run(panel) {
    var started = performance.now(), storage = null;
    try {
      storage = root.localStorage;
    } catch (e) {
      storage = null;
    }
    show(panel, "checking", []);
    return ed25519().then(function (ed) {
      if (!ed) {
        show(panel, "cannot", [[say(panel, "noed25519")]]);
        return "cannot";
      }
      return Promise.all([fetchText(panel.getAttribute("data-policy")), fetchText(panel.getAttribute("data-bundle"))])
        .then(function (texts) {
          var policyText = texts[0], bundle = parseJSON(texts[1], "the bundle"), policy = parsePolicy(policyText);
          var pinned = storage ? pin(storage, root.location.origin, policyText) : { state: "unpinned", fingerprint: fingerprint(policyText) };
          if (pinned.state === "changed") {
            var button = element("button", "button", say(panel, "trustnew"));
            button.type = "button";
            button.addEventListener("click", function () {
              repin(storage, root.location.origin, policyText);
              run(panel);
            });
            show(panel, "failed", [
              [say(panel, "policychanged", { old: pinned.pinned.fingerprint, fp: pinned.fingerprint }), "warn"]
            ], button);
            return "failed";
          }
          var bundleUrl = panel.getAttribute("data-bundle");
          return verifyBundle(bundle, policy, ed, {
            nowSeconds: Math.floor(Date.now() / 1000),
            sample: function (places) {
              return fetchText(bundleUrl + (bundleUrl.indexOf("?") < 0 ? "?" : "&") + "at=" + places.join(",")).then(function (text) { return parseJSON(text, "the sample"); });
            },
            progress: function (done, total) {
              panel.querySelector("[data-phone-result] .phone-verdict").textContent = say(panel, "checking") + " " + done + " / " + total;
            }
          }).then(function (report) {
            report.policy = policy;
            var lines = keyLines(panel, report, pinned.fingerprint);
            if (pinned.state === "first") lines.push([say(panel, "pinnedfirst"), "small"]);
            if (pinned.state === "unpinned") lines.push([say(panel, "notpinned"), "small"]);
            show(panel, "verified", lines);
            panel.setAttribute("data-ms", String(Math.round(performance.now() - started)));
            return "verified";
          });
        })
        .catch(function (error) {
          var step = error && error.step;
          var state = step === "UNSUPPORTED" || step === "FETCH" ? "cannot" : "failed";
          show(panel, state, [[(error && error.message) || String(error), "warn"]]);
          panel.setAttribute("data-step", step || "ERROR");
          return state;
        });
    });
  }

  function start() {
    var panel = document.getElementById("phone-check");
    if (!panel) return;
    panel.hidden = false;
    // After the first paint: the page and its server's verdict come first.
    var later = root.requestIdleCallback || function (f) { setTimeout(f, 0); };
    root.requestAnimationFrame(function () { later(function () { run(panel); }); });
  }

  root.ProvenanceVerify = {
    sha256: sha256, jcs: jcs, b64decode: b64decode, didKey: didKey, hashLeaf: hashLeaf,
    rootFromInclusionProof: rootFromInclusionProof, parsePolicy: parsePolicy, evaluate: evaluate,
    verifyBundle: verifyBundle, ed25519: ed25519, fingerprint: fingerprint, hex: hex,
    SIGNER_ROLES: SIGNER_ROLES, run: run
  };
  if (typeof document !== "undefined") {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
    else start();
  }
})(this);
