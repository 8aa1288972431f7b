"""A short scenario driven through a client generated from openapi.yaml.

scripts/generated-client.sh generates `reserve_client` with openapi-python-client
and runs this against a `reserve serve --demo`. Every request goes through the
generated functions, every body is a generated model (never a raw dict or
additional properties), and every answer must parse into the model the spec
promises, with no property the spec does not declare. Any other answer ends
the run with exit status 1 and says what came back.

Environment: RESERVE_URL, ADMIN_TOKEN, OPERATOR_TOKEN, VIEWER_TOKEN.
"""

from __future__ import annotations

import datetime
from http import HTTPStatus
import os
import sys
import traceback
import uuid
from typing import Any

from reserve_client import AuthenticatedClient, Client
from reserve_client.api.depots import create_depot, get_depot
from reserve_client.api.docs import get_open_api_spec
from reserve_client.api.ledger import list_ledger_entries, post_acquisition, post_release
from reserve_client.api.flows import upload_import_flows  # noqa: F401 (see upload_flows)
from reserve_client.api.rules import (
    create_release_rule,
    evaluate_release_rule,
    list_rule_evaluations,
    run_simulation,
)
from reserve_client.api.stockpiles import get_stockpile_balance
from reserve_client.models import (
    Balance,
    CountryInput,
    FlowRow,
    FlowUploadResult,
    ReleaseRule,
    ReleaseRuleRequest,
    ReleaseRuleRequestMethodType1,
    ReleaseRuleRequestOrderKind,
    RuleEvaluation,
    RuleEvaluationPage,
    Shock,
    Simulation,
    SimulationRequest,
    CreateDepotRequest,
    Depot,
    DepotStatus,
    Entry,
    EntryKind,
    EntryPage,
    ListLedgerEntriesOrder,
    MovementRequest,
    Problem,
)
from reserve_client.types import Response

# Ledger pages are read 100 entries at a time; the demo holds under 2,000
# entries, so a listing that needs more pages than this never ends.
PAGE_LIMIT = 100
MAX_PAGES = 100


class ScenarioFailed(Exception):
    pass


def fail(message: str) -> None:
    raise ScenarioFailed(message)


def expect(step: str, response: Response[Any], status: int, model: type, quiet: bool = False) -> Any:
    """The parsed body of `response`, which must have `status` and be a `model`."""
    parsed = response.parsed
    if response.status_code != status or not isinstance(parsed, model):
        fail(
            f"{step}: expected {status} {model.__name__}, got {int(response.status_code)} "
            f"{type(parsed).__name__}: {response.content[:500]!r}"
        )
    undeclared = getattr(parsed, "additional_properties", {})
    if undeclared:
        fail(f"{step}: the answer has properties openapi.yaml does not declare: {sorted(undeclared)}")
    if not quiet:
        print(f"ok  {step}: {int(response.status_code)} {model.__name__}")
    return parsed


def new_key() -> str:
    return str(uuid.uuid4())


def page_through(viewer: AuthenticatedClient, order: ListLedgerEntriesOrder) -> list[int]:
    """Every sequence in the ledger, following `next_cursor` until it is null."""
    sequences: list[int] = []
    cursor: str | None = None
    for page_number in range(1, MAX_PAGES + 1):
        kwargs: dict[str, Any] = {"client": viewer, "limit": PAGE_LIMIT, "order": order}
        if cursor is not None:
            kwargs["cursor"] = cursor
        page = list_ledger_entries.sync_detailed(**kwargs)
        parsed = expect(f"ledger page {page_number} ({order.value})", page, 200, EntryPage, quiet=True)
        for entry in parsed.items:
            if not isinstance(entry, Entry):
                fail(f"ledger page {page_number} ({order.value}): an item is not an Entry")
            sequences.append(entry.sequence)
        if parsed.next_cursor is None:
            print(f"ok  ledger ({order.value}): {len(sequences)} entries in {page_number} pages")
            return sequences
        if not parsed.items:
            fail(
                f"ledger ({order.value}): page {page_number} is empty but carries a next_cursor; "
                "next_cursor must be null on the last page"
            )
        cursor = parsed.next_cursor
    fail(f"ledger ({order.value}): still not at the end after {MAX_PAGES} pages of {PAGE_LIMIT}")
    return sequences


def upload_flows(operator: AuthenticatedClient, rows: list[FlowRow]) -> Response[Any]:
    """POST /api/v1/import-flows with a JSON array of generated `FlowRow`s.

    The one request not sent through its generated function: the operation
    takes `application/json` or `text/csv`, and openapi-python-client 0.29.1
    generates, for a body with two media types, `isinstance(body,
    list[FlowRow])`, which Python refuses (and `body.payload` on a `str`), so
    the function cannot send either form. The body is built from the
    generated models and the answer parsed into the generated model, as the
    generated function would.
    """
    http = operator.get_httpx_client()
    r = http.post(
        "/api/v1/import-flows",
        json=[row.to_dict() for row in rows],
        headers={"Idempotency-Key": new_key()},
    )
    parsed = FlowUploadResult.from_dict(r.json()) if r.status_code in (200, 201) else None
    return Response(
        status_code=HTTPStatus(r.status_code), content=r.content, headers=r.headers, parsed=parsed
    )


def run() -> None:
    base = os.environ["RESERVE_URL"]

    def client(token_var: str) -> AuthenticatedClient:
        return AuthenticatedClient(
            base_url=base, token=os.environ[token_var], raise_on_unexpected_status=True, timeout=30.0
        )

    admin, operator, viewer = client("ADMIN_TOKEN"), client("OPERATOR_TOKEN"), client("VIEWER_TOKEN")

    # The document the server serves is the one this client was generated from.
    spec = get_open_api_spec.sync_detailed(client=Client(base_url=base, raise_on_unexpected_status=True))
    if spec.status_code != 200 or not spec.content.startswith(b"openapi: 3.1.0\n"):
        fail(f"GET /openapi.yaml: {int(spec.status_code)} {spec.content[:200]!r}")
    print("ok  GET /openapi.yaml: 200 application/yaml")

    # 1. A depot (admin).
    code = "GC" + uuid.uuid4().hex[:6].upper()
    depot = expect(
        "create depot",
        create_depot.sync_detailed(
            client=admin,
            idempotency_key=new_key(),
            body=CreateDepotRequest(
                code=code.lower(),
                name="Generated-client depot",
                region="US-Test",
                capacity_kg="1000",
                max_drawdown_kg_per_day="500.5",
            ),
        ),
        201,
        Depot,
    )
    if depot.code != code or depot.status != DepotStatus.ACTIVE or depot.capacity_kg != "1000.000":
        fail(f"create depot: unexpected depot {depot.to_dict()}")
    fetched = expect("get depot", get_depot.sync_detailed(code, client=viewer), 200, Depot)
    if fetched.id != depot.id:
        fail(f"get depot: {fetched.to_dict()} is not {depot.to_dict()}")

    # 2. An acquisition, an hour ago, with a price (operator).
    now = datetime.datetime.now(datetime.timezone.utc)
    acquired_at = now - datetime.timedelta(hours=1)
    acquisition = MovementRequest(
        depot=code,
        element="Nd",
        form="oxide",
        grade="99.50",
        quantity_kg="250.5",
        occurred_at=acquired_at,
        reference="PO-GC-1",
        origin_country="AU",
        unit_price="61.25",
        currency="USD",
    )
    key = new_key()
    entry = expect(
        "post acquisition",
        post_acquisition.sync_detailed(client=operator, idempotency_key=key, body=acquisition),
        201,
        Entry,
    )
    if (
        entry.kind != EntryKind.ACQUISITION
        or entry.quantity_kg != "250.500"
        or entry.balance_after_kg != "250.500"
        or entry.grade != "99.5"
        or entry.unit_price != "61.25"
        or entry.currency != "USD"
    ):
        fail(f"post acquisition: unexpected entry {entry.to_dict()}")
    replay = post_acquisition.sync_detailed(client=operator, idempotency_key=key, body=acquisition)
    replayed = expect("post acquisition again, same key", replay, 201, Entry)
    if replayed.sequence != entry.sequence or replay.headers.get("idempotent-replayed") != "true":
        fail("post acquisition again: the first answer was not replayed")

    # 3. A release, now.
    release = expect(
        "post release",
        post_release.sync_detailed(
            client=operator,
            idempotency_key=new_key(),
            body=MovementRequest(depot=code, element="nd", form="OXIDE", grade="99.5", quantity_kg="100"),
        ),
        201,
        Entry,
    )
    if (
        release.kind != EntryKind.RELEASE
        or release.quantity_kg != "-100.000"
        or release.balance_after_kg != "150.500"
        or release.stockpile_id != entry.stockpile_id
    ):
        fail(f"post release: unexpected entry {release.to_dict()}")

    # A refusal parses as a problem document.
    refused = post_release.sync_detailed(
        client=operator,
        idempotency_key=new_key(),
        body=MovementRequest(depot=code, element="Nd", form="oxide", grade="99.5", quantity_kg="1000"),
    )
    problem = expect("post release beyond the stock", refused, 409, Problem)
    if problem.code != "insufficient-stock":
        fail(f"post release beyond the stock: {problem.to_dict()}")

    # 4. The whole ledger, page by page, in both orders.
    desc = page_through(viewer, ListLedgerEntriesOrder.DESC)
    asc = page_through(viewer, ListLedgerEntriesOrder.ASC)
    if len(set(desc)) != len(desc) or desc != sorted(desc, reverse=True):
        fail("ledger (desc): sequences repeat or are out of order")
    if asc != list(reversed(desc)):
        fail(f"ledger: asc and desc listings differ ({len(asc)} and {len(desc)} entries)")
    if entry.sequence not in desc or release.sequence not in desc or desc[0] != release.sequence:
        fail("ledger: the scenario's entries are missing or not the newest")
    print(f"ok  ledger: the same {len(desc)} entries in both orders")

    # 5. The stockpile's balance as of three instants.
    for label, as_of, expected in [
        ("before the acquisition", acquired_at - datetime.timedelta(minutes=1), "0.000"),
        ("between acquisition and release", acquired_at + datetime.timedelta(minutes=30), "250.500"),
        ("now", datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1), "150.500"),
    ]:
        balance = expect(
            f"balance {label}",
            get_stockpile_balance.sync_detailed(entry.stockpile_id, client=viewer, as_of=as_of),
            200,
            Balance,
        )
        if balance.on_hand_kg != expected or balance.stockpile_id != entry.stockpile_id:
            fail(f"balance {label}: expected {expected} kg, got {balance.to_dict()}")

    # 6. A release rule on holmium from Myanmar (admin), thirteen months of
    #    its imports ending last month, the last cut by 60% (operator): the
    #    upload's own evaluation fires the rule.
    rule = expect(
        "create release rule",
        create_release_rule.sync_detailed(
            client=admin,
            idempotency_key=new_key(),
            body=ReleaseRuleRequest(
                element="Ho",
                origin_countries=[CountryInput.MM],
                window_days=28,
                baseline_days=300,
                drop_threshold_percent="25",
                consecutive_breaches=1,
                cooldown_days=30,
                coverage_fraction="0.5",
                cap_kg="100",
                order_kind=ReleaseRuleRequestOrderKind.LIMITED_DRAWDOWN,
                method=ReleaseRuleRequestMethodType1.SALE,
                enabled=True,
            ),
        ),
        201,
        ReleaseRule,
    )
    first_of_month = datetime.date.today().replace(day=1)
    rows = []
    for back in range(13, 0, -1):
        start = first_of_month
        for _ in range(back):
            start = (start - datetime.timedelta(days=1)).replace(day=1)
        end = (start + datetime.timedelta(days=32)).replace(day=1) - datetime.timedelta(days=1)
        rows.append(
            FlowRow(
                element="Ho",
                form="carbonate",
                origin_country=CountryInput.MM,
                hs_code="2846.90.8000",
                period_start=start,
                period_end=end,
                quantity_kg="1000" if back == 1 else "2500",
                source="GC-customs",
                external_id=f"GC-HO-MM-{start:%Y-%m}",
            )
        )
    uploaded = expect("upload import flows", upload_flows(operator, rows), 201, FlowUploadResult)
    fired = [e for e in uploaded.rule_evaluations if e.rule_id == rule.id]
    if uploaded.inserted != 13 or len(fired) != 1 or fired[0].decision.value != "fired":
        fail(f"upload import flows: expected the rule to fire, got {uploaded.to_dict()}")
    again = expect(
        "evaluate release rule",
        evaluate_release_rule.sync_detailed(rule.id, client=operator, idempotency_key=new_key()),
        200,
        RuleEvaluation,
    )
    if again.reason.value != "cooldown":
        fail(f"evaluate release rule: expected a cooldown, got {again.to_dict()}")
    evaluations = expect(
        "list rule evaluations",
        list_rule_evaluations.sync_detailed(rule.id, client=viewer),
        200,
        RuleEvaluationPage,
    )
    if [e.decision.value for e in evaluations.items] != ["not_fired", "fired"]:
        fail(f"list rule evaluations: {evaluations.to_dict()}")
    simulation = expect(
        "run simulation",
        run_simulation.sync_detailed(
            client=viewer,
            body=SimulationRequest(
                shocks=[
                    Shock(
                        element="Dy",
                        origin_country=CountryInput.CN,
                        drop_percent="80",
                        start=datetime.date.today(),
                        months=6,
                    )
                ],
                horizon_days=365,
            ),
        ),
        200,
        Simulation,
    )
    if len(simulation.elements) != 1 or len(simulation.elements[0].days) != 365:
        fail(f"run simulation: unexpected answer for {len(simulation.elements)} elements")


def main() -> int:
    try:
        run()
    except ScenarioFailed as e:
        print(f"generated-client scenario FAILED: {e}", file=sys.stderr)
        return 1
    except Exception:  # an undocumented status (errors.UnexpectedStatus), a parse error...
        traceback.print_exc()
        print("generated-client scenario FAILED", file=sys.stderr)
        return 1
    print("generated-client scenario: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
