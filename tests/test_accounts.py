"""Portal accounts (provenance.store.accounts), the rate limiter, the document store
and the accounts CLI, without the web app."""

from __future__ import annotations

import io
import json
import sqlite3
import stat

import click
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.core.errors import ValidationError
from provenance.core.signing import did_of
from provenance.store.accounts.accounts import Accounts
from provenance.store.accounts.models import (
    AccountError,
    AuthenticationFailed,
    HashParams,
    KeyUnavailable,
    LoginThrottled,
    TokenRefused,
)
from provenance.store.accounts.scans import check_place
from provenance.store.accounts.secret import server_secret, token_hash
from provenance.web.portal.documents import DocumentRefused, DocumentStore, clean_name
from provenance.web.portal.ratelimit import Limit, RateLimiter

PASSWORD = "correct horse battery"
FAST = HashParams(time_cost=1, memory_cost=8, parallelism=1)
SECOND = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def accounts(tmp_path, clock):
    found = Accounts(tmp_path / "accounts", clock=clock, secret=b"s" * 32, hash_params=FAST)
    yield found
    found.close()


def farm_user(accounts: Accounts, name: str = "alice"):
    return accounts.add_user(
        name, "producer", PASSWORD, party_did="did:key:zFarm", party_name="Farm"
    )


# --- users and passwords


def test_passwords_are_argon2id_hashes(tmp_path, clock):
    default = Accounts(tmp_path / "a", clock=clock, secret=b"s" * 32)  # production parameters
    default.add_user("root", "admin", PASSWORD)
    stored = default.password_hash("root")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in stored
    assert default.authenticate("root", PASSWORD).name == "root"
    default.close()


def test_users_need_a_party_except_admins(accounts):
    with pytest.raises(ValidationError, match="belongs to a party"):
        accounts.add_user("bob", "producer", PASSWORD)
    with pytest.raises(ValidationError, match="no party"):
        accounts.add_user("root", "admin", PASSWORD, party_did="did:key:zX", party_name="X")
    with pytest.raises(ValidationError, match="role"):
        accounts.add_user("eve", "superuser", PASSWORD)
    farm_user(accounts)
    with pytest.raises(AccountError, match="exists already"):
        farm_user(accounts, "ALICE")  # names are case-insensitive


@pytest.mark.parametrize(
    ("password", "words"),
    [("short", "at least 10"), ("alice12345", "user name"), ("x" * 1025, "at most")],
)
def test_weak_passwords_are_refused(accounts, password, words):
    with pytest.raises(ValidationError, match=words):
        accounts.add_user("alice12345", "admin", password)


def test_authenticate(accounts):
    farm_user(accounts)
    assert accounts.authenticate("alice", PASSWORD).party_name == "Farm"
    for name, password in (("alice", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
            accounts.authenticate(name, password)
    accounts.set_disabled("alice", True)
    with pytest.raises(AuthenticationFailed):
        accounts.authenticate("alice", PASSWORD)


def test_login_throttling_locks_the_name_then_doubles(accounts, clock):
    farm_user(accounts)
    for _ in range(4):
        with pytest.raises(AuthenticationFailed):
            accounts.authenticate("alice", "wrong password!")
    with pytest.raises(AuthenticationFailed):  # the fifth failure locks
        accounts.authenticate("alice", "wrong password!")
    with pytest.raises(LoginThrottled) as locked:  # even the right password now
        accounts.authenticate("alice", PASSWORD)
    assert locked.value.retry_after == 30
    clock.now += 31 * SECOND
    with pytest.raises(AuthenticationFailed):  # sixth failure: locked for 60 s
        accounts.authenticate("alice", "wrong password!")
    with pytest.raises(LoginThrottled) as locked:
        accounts.authenticate("alice", PASSWORD)
    assert locked.value.retry_after == 60
    clock.now += 61 * SECOND
    assert accounts.authenticate("alice", PASSWORD).name == "alice"  # resets the count
    with pytest.raises(AuthenticationFailed):
        accounts.authenticate("alice", "wrong password!")


def test_rehash_on_login_when_parameters_change(tmp_path, clock):
    first = Accounts(tmp_path / "a", clock=clock, secret=b"s" * 32, hash_params=FAST)
    first.add_user("root", "admin", PASSWORD)
    first.close()
    stronger = HashParams(time_cost=2, memory_cost=16, parallelism=1)
    second = Accounts(tmp_path / "a", clock=clock, secret=b"s" * 32, hash_params=stronger)
    second.authenticate("root", PASSWORD)
    assert "m=16,t=2,p=1" in second.password_hash("root")
    second.close()


# --- sessions


def test_sessions_expire_and_end_on_password_change(accounts, clock):
    user = farm_user(accounts)
    sid = accounts.open_session(user)
    assert accounts.session_user(sid).name == "alice"
    stored = accounts.conn.execute("SELECT id_hash FROM sessions").fetchone()[0]
    assert stored == token_hash(sid) and sid not in stored
    clock.now += 2 * 3600 * SECOND + 1
    assert accounts.session_user(sid) is None  # idle
    sid = accounts.open_session(user)
    accounts.set_password("alice", "another long password")
    assert accounts.session_user(sid) is None
    sid = accounts.open_session(user)
    accounts.set_disabled("alice", True)
    assert accounts.session_user(sid) is None
    assert accounts.session_user("x" * 500) is None


def test_sessions_have_an_absolute_limit(accounts, clock):
    sid = accounts.open_session(farm_user(accounts))
    for _ in range(13):  # active every hour, still ends after 12 h
        clock.now += 3600 * SECOND
        found = accounts.session_user(sid)
    assert found is None


# --- API tokens


def test_tokens_are_shown_once_stored_hashed_and_revocable(accounts):
    token, secret = accounts.create_token(
        "did:key:zFarm", "Farm", "producer", label="ERP", created_by="test"
    )
    assert secret.startswith("pvt_") and len(secret) == 47
    raw = accounts.path.read_bytes() + (accounts.path.parent / "accounts.db-wal").read_bytes()
    assert secret.encode() not in raw
    who = accounts.token_principal(secret)
    assert (who.party_name, who.role, who.scope, who.token_id) == ("Farm", "producer", "write", 1)
    assert who.actor == "token 1 (ERP)"
    accounts.revoke_token(token.id)
    with pytest.raises(TokenRefused, match="revoked"):
        accounts.token_principal(secret)
    with pytest.raises(TokenRefused, match="unknown"):
        accounts.token_principal("pvt_" + "A" * 43)
    with pytest.raises(TokenRefused, match="malformed"):
        accounts.token_principal("Bearer nonsense")


def test_tokens_act_for_a_party_role(accounts):
    with pytest.raises(ValidationError, match="acts for a party"):
        accounts.create_token("did:key:z", "X", "admin", created_by="test")
    with pytest.raises(ValidationError, match="scope"):
        accounts.create_token("did:key:z", "X", "producer", scope="all", created_by="test")
    _, secret = accounts.create_token("did:key:z", "X", "carrier", scope="read", created_by="t")
    assert accounts.token_principal(secret).scope == "read"


# --- server-held keys


def test_party_keys_are_encrypted_under_the_server_secret(tmp_path, accounts, clock):
    key = Ed25519PrivateKey.generate()
    did = did_of(key)
    accounts.store_party_key(did, "Farm", key, role="producer", custodial=True)
    pem = accounts.conn.execute("SELECT pem FROM party_keys").fetchone()[0]
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert did_of(accounts.party_key(did)) == did
    with pytest.raises(ValidationError, match="not the key"):
        accounts.store_party_key("did:key:zOther", "Other", key, role="producer", custodial=True)
    # the vault never holds a regulator's key, nor one a party enrolled as its own
    with pytest.raises(ValidationError, match="regulator: its key is never held"):
        accounts.store_party_key(did, "Agency", key, role="regulator", custodial=True)
    with pytest.raises(ValidationError, match="holds its own key"):
        accounts.store_party_key(did, "Farm", key, role="producer", custodial=False)
    other = Accounts(tmp_path / "accounts", clock=clock, secret=b"t" * 32, hash_params=FAST)
    with pytest.raises(KeyUnavailable, match="cannot be decrypted"):
        other.party_key(did)
    with pytest.raises(KeyUnavailable, match="holds no signing key"):
        other.party_key("did:key:zNobody")
    other.close()
    assert accounts.remove_party_key(did) and not accounts.has_party_key(did)


def test_server_secret_file_is_private_and_env_wins(tmp_path):
    secret = server_secret(tmp_path / "acc", environ={})
    path = tmp_path / "acc" / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert server_secret(tmp_path / "acc", environ={}) == secret  # kept, not remade
    given = "y" * 40
    assert (
        server_secret(tmp_path / "acc", environ={"PROVENANCE_SECRET_KEY": given}) == given.encode()
    )
    with pytest.raises(ValidationError, match="at least 32"):
        server_secret(tmp_path / "acc", environ={"PROVENANCE_SECRET_KEY": "short"})


def test_accounts_database_is_not_world_readable(accounts):
    assert stat.S_IMODE(accounts.path.stat().st_mode) == 0o600


# --- the audit trail


def test_audit_trail_is_append_only_and_hash_chained(accounts):
    accounts.audit("user reg1", "search", {"q": "kale"}, role="regulator", party="Agency")
    accounts.audit("user reg1", "recall", {"lots": ["x"]}, role="regulator", party="Agency")
    entries = accounts.audit_entries()
    assert [e.action for e in entries] == ["recall", "search"]
    assert entries[1].params == {"q": "kale"} and entries[1].actor == "user reg1"
    assert accounts.verify_audit() == (2, None)
    for sql in ("UPDATE audit SET outcome = 'x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            accounts.conn.execute(sql)
    # someone with the file drops the guard and edits history: the chain says so
    accounts.conn.execute("DROP TRIGGER audit_no_update")
    accounts.conn.execute('UPDATE audit SET params = \'{"q":"spinach"}\' WHERE id = 1')
    checked, problem = accounts.verify_audit()
    assert checked == 0 and "entry 1" in problem


# --- consumer scans


def test_scans_are_counts_by_hour_and_coarse_place(accounts, clock):
    hour = 3600 * SECOND
    accounts.record_scan("lot-a", clock.now - 2 * hour, "KE")
    for place in ("KE", "ke", None, "Nairobi", "T1"):
        accounts.record_scan("lot-a", clock.now, place)
    accounts.record_scan("lot-b", clock.now + 25 * hour, "US")
    assert check_place("10.0.0.1") == "unknown"
    found = accounts.scans(["lot-a", "lot-b"], clock.now)
    day, next_day = "2026-09-21", "2026-09-22"
    assert found == [(day, "KE", 2), (day, "T1", 1), (day, "unknown", 2), (next_day, "US", 1)]
    assert accounts.scans([], clock.now) == []


# --- rate limiting


def test_limits_parse():
    assert Limit.parse("120/minute burst 40") == Limit(2.0, 40)
    assert Limit.parse("10/second") == Limit(10.0, 10)
    assert Limit.parse((0.5, 3)) == Limit(0.5, 3)
    with pytest.raises(ValueError, match="not a rate limit"):
        Limit.parse("lots")


def test_token_bucket_allows_a_burst_then_the_rate():
    limiter = RateLimiter(Limit(1.0, 3))
    assert [limiter.take("a", 100.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a", 100.0) == 1  # seconds to wait
    assert limiter.take("b", 100.0) == 0  # per client
    assert limiter.take("a", 101.1) == 0
    slow = RateLimiter(Limit(1 / 60, 1))
    slow.take("a", 0.0)
    assert slow.take("a", 0.0) == 60


def test_rate_limiter_memory_is_bounded_and_holds_no_addresses():
    limiter = RateLimiter(Limit(1.0, 1), max_clients=100)
    for n in range(1000):
        limiter.take(f"10.0.{n // 256}.{n % 256}", 0.0)
    assert len(limiter) == 100
    assert not any(b"10.0." in key for key in limiter._buckets)


# --- documents


def test_documents_are_content_addressed_and_checked(tmp_path):
    store = DocumentStore(tmp_path / "docs", max_bytes=1000)
    pdf = b"%PDF-1.4 certificate"
    stored = store.put(io.BytesIO(pdf), "../../etc/cert.pdf", "application/pdf")
    assert stored.name == "cert.pdf" and stored.new
    assert store.path(stored.sha256).read_bytes() == pdf
    assert store.path(stored.sha256).parent.name == stored.sha256[:2]
    again = store.put(io.BytesIO(pdf), "copy.pdf", "application/octet-stream")
    assert again.sha256 == stored.sha256 and not again.new
    cases = [
        (b"MZ\x90\x00", "virus.exe", "application/x-msdownload", 415),
        (b"not a pdf", "fake.pdf", "application/pdf", 415),
        (b"a\x00b", "bin.txt", "text/plain", 415),
        (b"%PDF-" + b"x" * 2000, "big.pdf", "application/pdf", 413),
        (b"", "empty.pdf", "application/pdf", 400),
    ]
    for data, name, media_type, status in cases:
        with pytest.raises(DocumentRefused) as refused:
            store.put(io.BytesIO(data), name, media_type)
        assert refused.value.status == status, name
    assert [p.name for p in (tmp_path / "docs").iterdir() if p.name.startswith(".")] == []
    assert clean_name("a\x00b\nc.pdf") == "a b c.pdf"
    assert clean_name("") == "document"


# --- the CLI


def _cli():
    from provenance.cli.accounts import portal, token, user
    from provenance.cli.context import Context

    @click.group()
    @click.option("--db")
    @click.option("--keys")
    @click.pass_context
    def cli(ctx: click.Context, db: str, keys: str) -> None:
        ctx.obj = Context(db, keys)

    for command in (user, token, portal):
        cli.add_command(command)
    return cli


@pytest.fixture
def ledger_dir(tmp_path, monkeypatch):
    """A ledger made by the real CLI with a producer and a regulator."""
    from provenance.cli.main import main

    monkeypatch.delenv("PROVENANCE_SECRET_KEY", raising=False)
    monkeypatch.delenv("PROVENANCE_ACCOUNTS", raising=False)
    runner = CliRunner()
    base = ["--db", str(tmp_path / "ledger.db"), "--keys", str(tmp_path / "keys")]
    for args in (
        ["init"],
        ["party", "add", "Green Valley Farm", "--role", "producer", "--prefix", "9506000"],
        ["key", "new", "--out", str(tmp_path / "agency.pem")],  # the regulator's own machine
    ):
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == 0, result.output
    agency = result.output.strip()
    result = runner.invoke(
        main, [*base, "party", "add", "Food Agency", "--role", "regulator", "--public-key", agency]
    )
    assert result.exit_code == 0, result.output
    return tmp_path, base


@pytest.mark.slow  # password hashes at full cost, through the CLI
def test_cli_users_tokens_keys_and_audit(ledger_dir):
    tmp_path, base = ledger_dir
    cli, runner = _cli(), CliRunner()

    def run(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(cli, [*base, *args], input=stdin)
        assert result.exit_code == 0, result.output
        return result.output

    out = run("user", "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert "user root added" in out
    out = run(
        "user",
        "add",
        "alice",
        "--role",
        "producer",
        "--party",
        "Green Valley Farm",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert "now holds the signing key of Green Valley Farm" in out
    bad = runner.invoke(
        cli,
        [
            *base,
            "user",
            "add",
            "bob",
            "--role",
            "regulator",
            "--party",
            "Green Valley Farm",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert bad.exit_code == 1 and "enrolled as a producer" in bad.output
    users = [json.loads(line) for line in run("user", "list", "--json").splitlines()]
    assert [(u["name"], u["role"], u["party"]) for u in users] == [
        ("alice", "producer", "Green Valley Farm"),
        ("root", "admin", None),
    ]
    secret = run("token", "create", "Green Valley Farm", "--label", "ERP").splitlines()[0]
    assert secret.startswith("pvt_")
    assert "ERP" in run("token", "list") and secret not in run("token", "list")
    assert "revoked" in run("token", "revoke", "1")
    refused = runner.invoke(
        cli, [*base, "portal", "key-import", "Food Agency", "--key", str(tmp_path / "agency.pem")]
    )
    assert refused.exit_code == 1 and refused.output.startswith("Error: ")
    assert "Food Agency is a regulator: its key is never held" in refused.output
    assert len(run("portal", "keys").splitlines()) == 1
    run("user", "disable", "alice")
    accounts = Accounts(tmp_path / "accounts")
    assert accounts.user("alice").disabled
    assert stat.S_IMODE((tmp_path / "accounts" / "secret.key").stat().st_mode) == 0o600
    actions = [json.loads(line)["action"] for line in run("portal", "audit", "--json").splitlines()]
    assert actions[0] == "user-disable" and "token-create" in actions and "key-import" in actions
    assert "hash chain intact" in run("portal", "audit", "--verify")
    accounts.close()


def test_cli_accounts_folder_option(ledger_dir, tmp_path):
    _, base = ledger_dir
    result = CliRunner().invoke(
        _cli(),
        [
            *base,
            "user",
            "--accounts",
            str(tmp_path / "elsewhere"),
            "add",
            "root",
            "--role",
            "admin",
            "--password-stdin",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "accounts.db").exists()
