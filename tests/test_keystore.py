"""provenance.infra.keystore: PKCS#8 PEM private keys (mode 0600, never overwritten) and the
public-key forms `--public-key` accepts (did:key, PEM SubjectPublicKeyInfo, a file
holding either)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from provenance.core.errors import KeyFileError, ValidationError
from provenance.core.signing import did_of
from provenance.infra.keystore import (
    KeyStore,
    load_private_key,
    public_key_text_to_did,
    read_public_key,
)

RFC8032_TEST1_SECRET = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)
RFC8032_TEST1_DID = "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"
TEST1 = Ed25519PrivateKey.from_private_bytes(RFC8032_TEST1_SECRET)


def _public_pem(key: object) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _private_pem(key: object) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())  # type: ignore[attr-defined]


# --- KeyStore ------------------------------------------------------------------------------


def test_create_writes_pkcs8_pem_with_mode_0600(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    key = store.create("farm")
    path = tmp_path / "keys" / "farm.pem"
    assert store.path("farm") == path
    assert store.exists("farm")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) & 0o077 == 0
    text = path.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    assert text.rstrip().endswith("-----END PRIVATE KEY-----")
    assert text.encode() == _private_pem(key)
    loaded = store.load("farm")
    assert did_of(loaded) == did_of(key)
    assert did_of(load_private_key(path)) == did_of(key)


def test_create_makes_a_new_key_each_time(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    assert did_of(store.create("a")) != did_of(store.create("b"))


def test_create_refuses_to_overwrite(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    first = store.create("farm")
    before = store.path("farm").read_bytes()
    with pytest.raises(KeyFileError, match="already exists; refusing to overwrite a key") as info:
        store.create("farm")
    assert str(store.path("farm")) in str(info.value)
    assert store.path("farm").read_bytes() == before
    assert did_of(store.load("farm")) == did_of(first)


def test_create_refuses_to_overwrite_any_file(tmp_path: Path) -> None:
    (tmp_path / "farm.pem").write_text("not a key, but someone's file")
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        KeyStore(tmp_path).create("farm")
    assert (tmp_path / "farm.pem").read_text() == "not a key, but someone's file"


def test_load_of_a_missing_key_says_where_it_looked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    with pytest.raises(KeyFileError) as info:
        store.load("carrier")
    message = str(info.value)
    assert "'carrier'" in message
    assert str(tmp_path / "keys" / "carrier.pem") in message
    assert "PROVENANCE_KEYS" in message


@pytest.mark.parametrize(
    "name", ["", "../farm", "farm/x", " farm", "farm key", ".hidden", "f" * 101, "农场"]
)
def test_key_names_are_checked(tmp_path: Path, name: str) -> None:
    store = KeyStore(tmp_path)
    with pytest.raises(ValidationError, match="use letters, digits and"):
        store.create(name)
    with pytest.raises(ValidationError):
        store.load(name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "other",
    [
        lambda: ec.generate_private_key(ec.SECP256R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        X25519PrivateKey.generate,
    ],
    ids=["p256", "rsa", "x25519"],
)
def test_a_non_ed25519_pem_is_refused(tmp_path: Path, other: object) -> None:
    (tmp_path / "farm.pem").write_bytes(_private_pem(other()))  # type: ignore[operator]
    with pytest.raises(KeyFileError, match=r"farm\.pem: not an Ed25519 key"):
        KeyStore(tmp_path).load("farm")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"junk",
        _public_pem(TEST1),
        TEST1.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption()),
        TEST1.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"pw")),
    ],
    ids=["empty", "junk", "public-pem", "der", "encrypted"],
)
def test_a_file_that_is_not_an_unencrypted_pem_key_is_refused(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / "farm.pem").write_bytes(content)
    with pytest.raises(KeyFileError, match=r"farm\.pem: not an unencrypted PKCS#8 PEM private key"):
        KeyStore(tmp_path).load("farm")


def test_known_key_loads_to_its_did(tmp_path: Path) -> None:
    (tmp_path / "test1.pem").write_bytes(_private_pem(TEST1))
    assert did_of(KeyStore(tmp_path).load("test1")) == RFC8032_TEST1_DID


# --- read_public_key -----------------------------------------------------------------------


def test_read_public_key_accepts_a_did_key() -> None:
    assert read_public_key(RFC8032_TEST1_DID) == RFC8032_TEST1_DID


def test_read_public_key_accepts_a_pem_file(tmp_path: Path) -> None:
    path = tmp_path / "farm.pub.pem"
    path.write_bytes(_public_pem(TEST1))
    assert read_public_key(str(path)) == RFC8032_TEST1_DID


def test_read_public_key_accepts_a_file_holding_a_did(tmp_path: Path) -> None:
    path = tmp_path / "farm.did"
    path.write_text(f"  {RFC8032_TEST1_DID}\n")
    assert read_public_key(str(path)) == RFC8032_TEST1_DID


def test_public_key_text_to_did_accepts_both_forms() -> None:
    assert public_key_text_to_did(RFC8032_TEST1_DID + "\n") == RFC8032_TEST1_DID
    assert public_key_text_to_did(_public_pem(TEST1).decode()) == RFC8032_TEST1_DID


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("did:key:z6Mk", "must be an Ed25519 did:key"),
        (RFC8032_TEST1_DID[:-1] + "0", "'0' is not a base58btc character"),
        ("did:key:z6LSrApwZptxFR4jy6U8Z8exYPwTqSXniWLqihApE1oK9WsK", "multicodec 0xed01"),
    ],
    ids=["short", "bad-char", "x25519"],
)
def test_read_public_key_refuses_a_bad_did(text: str, rule: str) -> None:
    with pytest.raises(ValidationError) as info:
        read_public_key(text)
    assert info.value.field == "public key"
    assert rule in info.value.rule


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        ("junk\n", "neither a did:key nor a PEM SubjectPublicKeyInfo"),
        ("", "neither a did:key nor a PEM SubjectPublicKeyInfo"),
        (_private_pem(TEST1).decode(), "neither a did:key nor a PEM SubjectPublicKeyInfo"),
        (_public_pem(ec.generate_private_key(ec.SECP256R1())).decode(), "must be an Ed25519 key"),
        (_public_pem(X25519PrivateKey.generate()).decode(), "must be an Ed25519 key"),
        ("did:web:example.com\n", "neither a did:key nor a PEM SubjectPublicKeyInfo"),
        (f"did:key:z{'1' * 10}\n", "must be an Ed25519 did:key"),
    ],
    ids=["junk", "empty", "private-pem", "p256", "x25519", "did-web", "did-key-junk"],
)
def test_read_public_key_refuses_junk_files(tmp_path: Path, content: str, rule: str) -> None:
    path = tmp_path / "key.txt"
    path.write_text(content)
    with pytest.raises(ValidationError) as info:
        read_public_key(str(path))
    assert str(info.value).startswith("public key: ")
    assert rule in info.value.rule


def test_read_public_key_of_a_missing_file_says_what_it_wants(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(KeyFileError) as info:
        read_public_key(missing)
    assert str(info.value) == f"{missing}: no such file (give a PEM public key file or a did:key)"


@pytest.mark.parametrize(
    "content",
    [
        TEST1.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
        b"\xff\xfe\x00binary",
    ],
    ids=["der-spki", "binary"],
)
def test_read_public_key_refuses_binary_files_clearly(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key.der"
    path.write_bytes(content)
    with pytest.raises((ValidationError, KeyFileError), match="PEM"):
        read_public_key(str(path))
