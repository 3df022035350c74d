"""Numbers in requests (issue 9, "server errors on input").

Python's int() reads ``٣`` as 3 and raises on ``²``; str.isdigit() is true for
both. Every numeric parameter is parsed by `provenance.web.params`, which takes
ASCII digits within bounds and answers 400 naming the parameter. Three tests
close the class: every route of the app (enumerated from its url_map) gets
hostile numbers in every numeric parameter and never answers 5xx; every
numeric parameter the code reads is listed here and refuses each hostile
value with a 400 naming it; and no module of the web layer calls int() or
float() on anything but its own data.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.world import GTIN, LOT

from provenance.web import params

WEB = Path(params.__file__).resolve().parent

HOSTILE = [
    "²",  # superscript two: isdigit(), int() raises
    "٣",  # Arabic-Indic three: int() is 3
    "１２",  # fullwidth: int() is 12
    "𝟙",  # mathematical bold one
    "1e3",
    "-1",
    " 1",
    "0x10",
    "1_000",
    "nan",
    "99999999999999999999999999",
    "9223372036854775808",  # 2**63: past SQLite's INTEGER
    "1\x00",
]

# Enough for the sweep over every route: a value int() refuses, ones it misreads,
# one past every bound, and a NUL.
SWEEP = ["²", "٣", "１２", "99999999999999999999999999", "1\x00", "-1"]
# Each value goes to every route: the fast lane (`./run tests --fast`) sends two.
FAST_SWEEP = {"²", "99999999999999999999999999"}

NUMERIC_QUERY = [
    "page",
    "count",
    "event",
    "before",
    "limit",
    "size",
    "first",
    "second",
    "start",
    "end",
]
NUMERIC_FORM = ["quantity", "in0_quantity", "out0_quantity"]


def test_the_lists_here_name_every_numeric_parameter_the_code_reads():
    read: set[str] = set()
    for path in WEB.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        read |= set(re.findall(r"\b(?:optional_)?int_arg\(\s*\"(\w+)\"", text))
        for prefix, suffix in re.findall(
            r"form_quantity\(\s*form\.get\(f?\"(\w*?)(\{n\})?_?quantity", text
        ):
            read.add((prefix + ("0" if suffix else "") + "_quantity").lstrip("_"))
    assert read, "found no numeric parameters: has the parser moved?"
    assert read <= set(NUMERIC_QUERY) | set(NUMERIC_FORM), (
        read - set(NUMERIC_QUERY) - set(NUMERIC_FORM)
    )


# int( or float( applied to something, outside params.py: each is on our own data.
ALLOWED_CONVERSIONS = {
    ("resolver.py", "int(view.lot.recalled),"),
    ("portal/__init__.py", 'hops = int(app.config["TRUSTED_PROXIES"] or 0)'),
    ("portal/state.py", '"TRUSTED_PROXIES": int(env.get("PROVENANCE_TRUSTED_PROXIES", "0") or 0),'),
    ("portal/ratelimit.py", "return cls(float(value[0]), int(value[1]))"),
    ("portal/ratelimit.py", "count = float(words[0])"),
    (
        "portal/ratelimit.py",
        'burst = int(words[3]) if len(words) == 4 and words[2] == "burst" else None',
    ),
    ("portal/ratelimit.py", "rate, burst = self.limit.rate, float(self.limit.burst)"),
}


def test_no_int_or_float_on_request_data_outside_the_parser():
    found = set()
    for path in WEB.rglob("*.py"):
        # the parser; the chart (chart.py and its chart_*.py modules) reads no request
        if path.name == "params.py" or path.name.startswith("chart"):
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if re.search(r"(?<![\w.])(?:int|float)\(", line):
                found.add((path.relative_to(WEB).as_posix(), line.strip()))
    assert found <= ALLOWED_CONVERSIONS, (
        "parse numbers from requests with provenance.web.params; new conversions: "
        f"{sorted(found - ALLOWED_CONVERSIONS)}"
    )


def _url(rule, value: str) -> str | None:
    """The rule's path with *value* in its numeric segments and a plausible value
    in the others (None when the rule cannot be built)."""
    path = rule.rule
    for name, converter in rule._converters.items():
        if isinstance(converter, params.AsciiIntConverter):
            replacement = value
        elif name == "_rest":
            replacement = f"{GTIN}/10/LOT42"
        elif name == "filename":
            replacement = "scan.css"
        elif name == "kind":
            replacement = "pdf" if "label" in path else "epcis"
        elif name == "part":
            replacement = "lots"
        else:
            replacement = "0" * 64
        path = re.sub(rf"<(?:[^:<>]+:)?{name}>", replacement, path)
    return path


def _callers(portal):
    reg_token, farm_token = portal.token("regulator"), portal.token("farm")

    def call(method: str, path: str, query: dict, form: dict):
        statuses = []
        if path.startswith("/api/"):
            for token in (reg_token, farm_token):
                kwargs = {"json": form} if method == "POST" else {}
                statuses.append(
                    portal.api(method, path, token, query_string=query, **kwargs).status_code
                )
        elif path.startswith("/portal/"):
            for name in ("reg1", "farm1"):
                if method == "POST":
                    response = portal.post(name, path, form, query_string=query)
                else:
                    response = portal.client(name).get(path, query_string=query)
                statuses.append(response.status_code)
        else:
            client = portal.app.test_client()
            statuses.append(client.open(path, method=method, query_string=query).status_code)
        return statuses

    return call


@pytest.mark.parametrize(
    "value", [v if v in FAST_SWEEP else pytest.param(v, marks=pytest.mark.slow) for v in SWEEP]
)
def test_no_route_answers_5xx_to_a_hostile_number(portal, value):
    call = _callers(portal)
    skip = {"static", "portal.auth.logout"}  # logging out would end the test's sessions
    rules = [rule for rule in portal.app.url_map.iter_rules() if rule.endpoint not in skip]
    assert len(rules) > 50
    for rule in rules:
        path = _url(rule, value)
        query = dict.fromkeys(NUMERIC_QUERY, value)
        form = dict.fromkeys(NUMERIC_FORM, value)
        form.update(unit="KGM", in0_batch=LOT, out0_lot="OUT1", out0_gtin=GTIN)
        for method in sorted((rule.methods or set()) & {"GET", "POST"}):
            for status in call(method, path, query, form):
                assert status < 500, (method, path, value, status)
                if any(isinstance(c, params.AsciiIntConverter) for c in rule._converters.values()):
                    assert status >= 400, (method, path, value, status)  # never another id


# Every numeric parameter: a request that reaches it, as whom.
READERS = [
    ("/log/v1/proof/inclusion?id=" + "0" * 64, "size", None),
    ("/log/v1/proof/consistency?second=1", "first", None),
    ("/log/v1/proof/consistency?first=1", "second", None),
    ("/log/v1/entries?end=1", "start", None),
    ("/log/v1/entries?start=0", "end", None),
    ("/portal/", "page", "farm1"),
    ("/portal/regulator/search?q=Kale", "page", "reg1"),
    ("/portal/regulator/recalls/{lot}", "event", "reg1"),
    ("/portal/regulator/audit", "before", "reg1"),
    ("/portal/lots/{lot}/label.pdf", "count", "farm1"),
    ("/api/v1/lots", "page", "farm"),
    ("/api/v1/search?q=Kale", "page", "regulator"),
    ("/api/v1/lots/label?format=pdf&uri=" + LOT, "count", "farm"),
    ("/api/v1/recalls/report?uri=" + LOT, "event", "regulator"),
    ("/api/v1/audit", "before", "regulator"),
    ("/api/v1/audit", "limit", "regulator"),
]


def test_readers_cover_every_numeric_query_parameter():
    assert {name for _, name, _ in READERS} == set(NUMERIC_QUERY)


@pytest.mark.parametrize(("url", "name", "who"), READERS)
def test_each_numeric_parameter_refuses_hostile_numbers_naming_itself(portal, url, name, who):
    world = portal.world
    world.ok("regulator", "recall", [LOT], {"reason": "test", "class": "II"})
    url = url.replace("{lot}", str(portal.lot_id(LOT)))
    joiner = "&" if "?" in url else "?"
    for value in HOSTILE:
        target = f"{url}{joiner}{name}={value}"
        if url.startswith("/api/"):
            response = portal.api("GET", target, portal.token(who))
        elif who:
            response = portal.client(who).get(target)
        else:
            response = portal.app.test_client().get(target, headers={"Accept": "application/json"})
        body = response.get_data(as_text=True)
        assert response.status_code == 400, (target, response.status_code, body[:300])
        assert name in body and "digits 0-9" in body, (target, body[:300])


@pytest.mark.parametrize("value", [v for v in HOSTILE if v != " 1"] + ["", "1.5.2", "+3", "1,5"])
def test_a_form_quantity_takes_only_ascii_decimals(portal, value):
    form = {"gtin": GTIN, "lot": "Q1", "product": "Beans", "quantity": value, "unit": "KGM"}
    response = portal.post("farm1", "/portal/lots/new", form)
    assert response.status_code == 400, (value, response.status_code)
    # said next to the amount, in words (docs/portal.md, "Forms that explain themselves")
    page = response.get_data(as_text=True)
    quantity = next(
        label
        for label in re.findall(r"<label>.*?</label>", page, re.S)
        if 'name="quantity"' in label
    )
    assert "field-error" in quantity, value
    assert portal.world.store.lot_by_uri(f"https://id.gs1.org/01/{GTIN}/10/Q1") is None


def test_numbers_written_plainly_still_work(portal):
    form = {"gtin": GTIN, "lot": "Q2", "product": "Beans", "quantity": "12.50", "unit": "KGM"}
    assert portal.post("farm1", "/portal/lots/new", form).status_code == 303
    lot = portal.world.store.lot_by_uri(f"https://id.gs1.org/01/{GTIN}/10/Q2")
    assert lot is not None
    token = portal.token("regulator")
    assert portal.api("GET", "/api/v1/audit?limit=5&before=1000", token).status_code == 200
    assert portal.client("farm1").get("/portal/?page=2").status_code == 200


def test_int_path_segments_take_ascii_digits_only(portal):
    lot_id = portal.lot_id(LOT)
    client = portal.client("reg1")
    assert client.get(f"/portal/lots/{lot_id}").status_code == 200
    arabic = "".join("٠١٢٣٤٥٦٧٨٩"[int(d)] for d in str(lot_id))
    assert client.get(f"/portal/lots/{arabic}").status_code == 404  # not lot {lot_id}
    assert client.get("/portal/lots/99999999999999999999").status_code == 404
