// The portal's signing in the browser (docs/portal.md, "Keys in the browser").
// The party's Ed25519 key is made here with WebCrypto and kept in IndexedDB as a
// non-extractable CryptoKey: the server never sees it. A backup is the PKCS#8
// key encrypted with a passphrase (PBKDF2-SHA256 + AES-256-GCM), downloaded once.
// The server prepares an unsigned envelope; this script canonicalises it with
// RFC 8785 (JCS, below), shows it, signs it and posts the signature.
// No third-party code, no requests but to our own server.
"use strict";

const DB_NAME = "provenance-keys";
const STORE = "keys";
const KEY_ID = "party";
const PBKDF2_ITERATIONS = 600000;
const BACKUP_FORMAT = "provenance-key-backup-v1";

// --- RFC 8785 (JCS): sorted keys (by UTF-16 code units), ECMAScript number
// and string serialisation, no whitespace.
function jcs(value) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new Error("JCS: NaN and Infinity have no JSON form");
    return JSON.stringify(value); // ECMAScript Number::toString, -0 as 0: what JCS specifies
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return "[" + value.map(jcs).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value).sort(); // default sort compares UTF-16 code units
    return "{" + keys.map((k) => JSON.stringify(k) + ":" + jcs(value[k])).join(",") + "}";
  }
  throw new Error("JCS: cannot serialise a " + typeof value);
}

function canonicalBytes(value) {
  return new TextEncoder().encode(jcs(value));
}

// --- encodings
function base64url(bytes) {
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64(text) {
  const raw = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
function base58btc(bytes) {
  let digits = [0];
  for (const byte of bytes) {
    let carry = byte;
    for (let i = 0; i < digits.length; i++) {
      carry += digits[i] << 8;
      digits[i] = carry % 58;
      carry = (carry / 58) | 0;
    }
    while (carry) {
      digits.push(carry % 58);
      carry = (carry / 58) | 0;
    }
  }
  let out = "";
  for (const byte of bytes) {
    if (byte !== 0) break;
    out += "1";
  }
  for (let i = digits.length - 1; i >= 0; i--) out += B58[digits[i]];
  return out;
}

function didOfPublicKey(raw) {
  const prefixed = new Uint8Array(34);
  prefixed.set([0xed, 0x01]);
  prefixed.set(raw, 2);
  return "did:key:z" + base58btc(prefixed);
}

// --- IndexedDB: one non-extractable key pair per browser profile
function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function withStore(mode, action) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const request = action(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error);
  });
}

const loadKey = () => withStore("readonly", (s) => s.get(KEY_ID));
const saveKey = (record) => withStore("readwrite", (s) => s.put(record, KEY_ID));

async function supported() {
  try {
    await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    return true;
  } catch (e) {
    return false;
  }
}

// Keep a key in this browser as non-extractable, from its PKCS#8 bytes.
async function keepKey(pkcs8, publicRaw) {
  const privateKey = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, [
    "sign",
  ]);
  const did = didOfPublicKey(publicRaw);
  await saveKey({ privateKey, did });
  return did;
}

async function passphraseKey(passphrase, salt) {
  const material = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(passphrase),
    "PBKDF2",
    false,
    ["deriveKey"],
  );
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations: PBKDF2_ITERATIONS },
    material,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

// A new key: made extractable once, so its PKCS#8 can be encrypted for the
// backup; what is kept is a non-extractable re-import.
async function newKey(passphrase) {
  if (!passphrase || passphrase.length < 12) throw new Error("choose a passphrase of 12 or more characters");
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const publicRaw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, await passphraseKey(passphrase, salt), pkcs8);
  const did = await keepKey(pkcs8, publicRaw);
  pkcs8.fill(0);
  const backup = {
    format: BACKUP_FORMAT,
    did,
    kdf: { name: "PBKDF2", hash: "SHA-256", iterations: PBKDF2_ITERATIONS, salt: base64url(salt) },
    cipher: { name: "AES-GCM", iv: base64url(iv) },
    public_key: base64url(publicRaw),
    key: base64url(new Uint8Array(sealed)),
  };
  return { did, backup: JSON.stringify(backup, null, 2) };
}

async function restoreKey(backupText, passphrase) {
  const backup = JSON.parse(backupText);
  if (backup.format !== BACKUP_FORMAT) throw new Error("not a provenance key backup");
  const aes = await passphraseKey(passphrase, fromBase64(backup.kdf.salt));
  let pkcs8;
  try {
    pkcs8 = new Uint8Array(
      await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64(backup.cipher.iv) }, aes, fromBase64(backup.key)),
    );
  } catch (e) {
    throw new Error("wrong passphrase, or the backup file was changed");
  }
  const did = await keepKey(pkcs8, fromBase64(backup.public_key));
  pkcs8.fill(0);
  if (did !== backup.did) throw new Error("the backup's did does not match its key");
  return did;
}

// Sign one unsigned envelope (an object without sig) with the kept key.
async function signEnvelope(envelope, expectedDid) {
  const kept = await loadKey();
  if (!kept) throw new Error("no key in this browser: make one, or restore your backup, on the Key page");
  if (envelope.signer !== kept.did || (expectedDid && expectedDid !== kept.did)) {
    throw new Error("the key in this browser (" + kept.did + ") is not your party's enrolled key");
  }
  const signature = await crypto.subtle.sign({ name: "Ed25519" }, kept.privateKey, canonicalBytes(envelope));
  return base64url(new Uint8Array(signature));
}

// --- pages
function show(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

function download(name, text) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  link.download = name;
  link.click();
}

async function keyPage(root) {
  const enrolled = root.dataset.enrolled;
  if (!(await supported())) {
    show("key-status", "This browser cannot make Ed25519 keys (WebCrypto). Use a current Chromium, Firefox or Safari.");
    return;
  }
  const kept = await loadKey();
  let status = "This browser holds no key yet.";
  if (kept) {
    status = "This browser holds the key " + kept.did;
    if (!enrolled) status += ".";
    else status += kept.did === enrolled ? " (your party's enrolled key)." : " — not your party's enrolled key.";
  }
  show("key-status", status);
  document.getElementById("key-new").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const made = await newKey(event.target.passphrase.value);
      download("provenance-key-backup.json", made.backup);
      show("key-status", "New key " + made.did + " kept in this browser; its encrypted backup was downloaded. Send this did:key to the registrar to be enrolled.");
    } catch (e) {
      show("key-status", "Not made: " + e.message);
    }
  });
  document.getElementById("key-restore").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const file = event.target.backup.files[0];
      const did = await restoreKey(await file.text(), event.target.passphrase.value);
      show("key-status", "Restored " + did + " into this browser.");
    } catch (e) {
      show("key-status", "Not restored: " + e.message);
    }
  });
}

async function signPage(root) {
  const form = document.getElementById("sign-form");
  const envelopes = JSON.parse(document.getElementById("unsigned").textContent);
  const shown = document.getElementById("signed-bytes");
  if (shown) shown.textContent = envelopes.map(jcs).join("\n");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const sigs = [];
      for (const envelope of envelopes) sigs.push(await signEnvelope(envelope, root.dataset.signer));
      form.signatures.value = JSON.stringify(sigs);
      form.submit();
    } catch (e) {
      show("sign-status", "Not signed: " + e.message);
    }
  });
}

if (typeof document !== "undefined") {
  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("browser-key");
    if (!root) return;
    (root.dataset.page === "sign" ? signPage : keyPage)(root);
  });
}

globalThis.provenanceSigning = { jcs, canonicalBytes, didOfPublicKey, newKey, restoreKey, signEnvelope, supported, loadKey };
