//! Release orders in the database. Every write runs inside one write
//! transaction and takes the order's row first (a conditional UPDATE on its
//! status), so two requests on one order queue there and the second sees
//! what the first did. Lock order: the order row, then what `ledger::post`
//! takes (depots, stockpiles, elements, `ledger_head`); approval and
//! cancellation take stockpile rows in id order after the order row. No path
//! takes an order row after a stockpile, so none can deadlock.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;

use super::dto::*;
use super::model::{self, executable_from, Method, OrderKind, PolicyBreach, Status};
use crate::auth::AuthUser;
use crate::config::LedgerSettings;
use crate::db::schema::{
    awards, bids, buyers, depots, order_allocations as oa, order_transitions as ot,
    release_orders as ro, stockpiles,
};
use crate::db::types::{self, Grade, Grams, Micros};
use crate::db::DbConn;
use crate::depots::model::DepotCode;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::events;
use crate::http::pagination::{Order, PageRequest};
use crate::ledger::model::{EntryDetails, EntryKind, Leg, StockpileKey};
use crate::ledger::post::{self, OrderLink, Posting};
use crate::ledger::repo::EntryRecord;
use crate::policy::model::ElementPolicy;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ro)]
pub struct OrderRow {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub quantity_g: i64,
    pub method: String,
    pub authority: String,
    pub reason: String,
    pub counterparty: Option<String>,
    pub emergency_finding: Option<String>,
    pub law: Option<String>,
    pub fiscal_year: Option<i32>,
    pub premium_percent: Option<String>,
    pub return_due: Option<NaiveDate>,
    pub late_premium_percent_per_day: Option<String>,
    pub released_g: i64,
    pub returned_g: i64,
    pub proposed_by: String,
    pub approved_by: Option<String>,
    pub rule_id: Option<i64>,
    pub expected_completion: Option<NaiveDate>,
    pub closes_at: Option<NaiveDateTime>,
    pub minimum_price_micros: Option<i64>,
    pub currency: Option<String>,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl OrderRow {
    fn kind(&self) -> OrderKind {
        OrderKind::parse(&self.kind).unwrap_or(OrderKind::LimitedDrawdown)
    }

    fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Proposed)
    }

    fn method(&self) -> Method {
        Method::from_stored(&self.method)
    }

    fn percent(v: &Option<String>) -> Option<Decimal> {
        v.as_deref().and_then(|p| p.parse().ok())
    }

    /// What an exchange owes on `on`: what was lent, with its premium and
    /// any late premium, rounded up to the gram.
    pub fn owed_g(&self, on: NaiveDate) -> Option<i64> {
        if self.kind() != OrderKind::Exchange {
            return None;
        }
        let due = self.return_due?;
        Some(model::owed_g(
            self.released_g,
            Self::percent(&self.premium_percent).unwrap_or_default(),
            Self::percent(&self.late_premium_percent_per_day),
            due,
            on,
        ))
    }

    fn key(
        &self,
        depot: DepotCode,
        form: Option<Form>,
        grade: Option<Grade>,
    ) -> ApiResult<StockpileKey> {
        let element = ElementSymbol::parse(&self.element)
            .map_err(|m| ApiError::internal(anyhow::anyhow!(m)))?;
        let stored_form =
            Form::parse(&self.form).map_err(|m| ApiError::internal(anyhow::anyhow!(m)))?;
        Ok(StockpileKey {
            depot,
            element,
            form: form.unwrap_or(stored_form),
            grade: grade.unwrap_or_else(|| Grade::from_stored(self.grade.clone())),
        })
    }
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn order_state(row: &OrderRow, wanted: &[Status], action: &str) -> ApiError {
    let wanted: Vec<&str> = wanted.iter().map(|s| s.as_str()).collect();
    ApiError::conflict(
        "order-state",
        format!(
            "order {} is {}; to {action} it must be {}",
            row.id,
            row.status,
            wanted.join(" or ")
        ),
        json!({ "order_id": row.id, "order_status": row.status, "allowed_from": wanted }),
    )
}

fn find(conn: &mut DbConn, id: i64) -> ApiResult<OrderRow> {
    ro::table
        .filter(ro::id.eq(id))
        .select(OrderRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("no release order {id}")))
}

/// Takes the order's row lock, provided it is in one of `from`.
fn lock(conn: &mut DbConn, id: i64, from: &[Status], action: &str) -> ApiResult<OrderRow> {
    let statuses: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let locked: Option<i64> = diesel::update(
        ro::table
            .filter(ro::id.eq(id))
            .filter(ro::status.eq_any(&statuses)),
    )
    .set((
        ro::version.eq(ro::version + 1),
        ro::updated_at.eq(types::to_db(types::now())),
    ))
    .returning(ro::id)
    .get_result(conn)
    .optional()?;
    let row = find(conn, id)?;
    match locked {
        Some(_) => Ok(row),
        None => Err(order_state(&row, from, action)),
    }
}

/// Moves the order to `to` and keeps the transition, numbered after the
/// order's last one (the order row is locked, so no other writer numbers it).
fn transition(
    conn: &mut DbConn,
    row: &mut OrderRow,
    actor: &str,
    to: Status,
    note: Option<&str>,
) -> ApiResult<()> {
    let last: Option<i32> = ot::table
        .filter(ot::order_id.eq(row.id))
        .select(diesel::dsl::max(ot::seq))
        .first(conn)?;
    let t = Transition {
        seq: last.unwrap_or(0) + 1,
        kind: &row.kind,
        element: &row.element,
        from: Some(&row.status),
        to,
    };
    write_transition(conn, row.id, actor, &t, note)?;
    diesel::update(ro::table.filter(ro::id.eq(row.id)))
        .set(ro::status.eq(to.as_str()))
        .execute(conn)?;
    row.status = to.as_str().to_string();
    Ok(())
}

/// A transition to record, with what its event names.
struct Transition<'a> {
    seq: i32,
    kind: &'a str,
    element: &'a str,
    from: Option<&'a str>,
    to: Status,
}

fn write_transition(
    conn: &mut DbConn,
    id: i64,
    actor: &str,
    t: &Transition,
    note: Option<&str>,
) -> ApiResult<()> {
    let at = types::now();
    diesel::insert_into(ot::table)
        .values((
            ot::order_id.eq(id),
            ot::seq.eq(t.seq),
            ot::at.eq(types::to_db(at)),
            ot::actor.eq(actor),
            ot::from_status.eq(t.from),
            ot::to_status.eq(t.to.as_str()),
            ot::note.eq(note),
        ))
        .execute(conn)?;
    let e = transition_event(id, actor, t, note, at);
    events::repo::stage(
        conn,
        &e.kind,
        e.element.as_deref(),
        None,
        e.subject.as_deref(),
        &e.data,
    )
}

/// The event a transition stages.
fn transition_event(
    id: i64,
    actor: &str,
    t: &Transition,
    note: Option<&str>,
    at: DateTime<Utc>,
) -> events::repo::NewEvent {
    events::repo::NewEvent {
        kind: format!("order.{}", t.to.as_str()),
        element: Some(t.element.to_string()),
        depot: None,
        subject: Some(format!("order:{id}")),
        data: serde_json::json!({
            "order_id": id,
            "kind": t.kind,
            "element": t.element,
            "from": t.from,
            "to": t.to.as_str(),
            "actor": actor,
            "at": types::rfc3339(at),
            "note": note,
        }),
    }
}

/// Announces each exchange that has become overdue, once: the
/// `orders.overdue` job. Returns a one-line outcome for `job_claims`.
pub fn announce_overdue(conn: &mut DbConn, slot: DateTime<Utc>) -> ApiResult<String> {
    let on = slot.date_naive();
    let candidates: Vec<OrderRow> = ro::table
        .filter(ro::kind.eq(OrderKind::Exchange.as_str()))
        .filter(ro::status.eq_any([Status::Executing.as_str(), Status::Completed.as_str()]))
        .filter(ro::return_due.lt(on))
        .order(ro::id.asc())
        .select(OrderRow::as_select())
        .load(conn)?;
    let mut announced = 0;
    for row in candidates {
        let (Some(due), Some(owed)) = (row.return_due, row.owed_g(on)) else {
            continue;
        };
        let subject = format!("order:{}", row.id);
        if !model::is_overdue(due, on, owed, row.returned_g)
            || events::repo::announced(conn, events::model::EXCHANGE_OVERDUE, &subject)?
        {
            continue;
        }
        events::repo::stage(
            conn,
            events::model::EXCHANGE_OVERDUE,
            Some(&row.element),
            None,
            Some(&subject),
            &serde_json::json!({
                "order_id": row.id,
                "element": row.element,
                "counterparty": row.counterparty,
                "return_due": due.to_string(),
                "owed_kg": Grams(owed).to_kg_string(),
                "returned_kg": Grams(row.returned_g).to_kg_string(),
                "outstanding_kg": Grams(owed - row.returned_g).to_kg_string(),
            }),
        )?;
        announced += 1;
    }
    Ok(format!("{announced} overdue exchange(s) announced"))
}

/// Stockpiles of the order's material at active depots, as allocation input.
pub struct Supply {
    depot_id: i64,
    stockpile_id: i64,
    supply: model::DepotSupply,
}

impl Supply {
    /// A stockpile at an active depot (code `depot`, shipping at most
    /// `rate_g_per_day`), holding `on_hand_g` of which `reserved_g` reserved.
    pub fn new(
        depot_id: i64,
        stockpile_id: i64,
        depot: String,
        on_hand_g: i64,
        reserved_g: i64,
        rate_g_per_day: i64,
    ) -> Supply {
        Supply {
            depot_id,
            stockpile_id,
            supply: model::DepotSupply {
                depot,
                available_g: on_hand_g - reserved_g,
                rate_g_per_day,
            },
        }
    }
}

fn supplies(conn: &mut DbConn, element: &str, form: &str, grade: &str) -> ApiResult<Vec<Supply>> {
    let rows: Vec<(i64, i64, String, i64, i64, i64)> = stockpiles::table
        .inner_join(depots::table)
        .filter(stockpiles::element.eq(element))
        .filter(stockpiles::form.eq(form))
        .filter(stockpiles::grade.eq(grade))
        .filter(depots::status.eq("active"))
        .select((
            depots::id,
            stockpiles::id,
            depots::code,
            stockpiles::on_hand_g,
            stockpiles::reserved_g,
            depots::max_drawdown_g_per_day,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(depot_id, stockpile_id, code, on_hand, reserved, rate)| {
            Supply::new(depot_id, stockpile_id, code, on_hand, reserved, rate)
        })
        .collect())
}

/// Plans the order afresh and checks it against the policy and the floor.
fn plan(
    conn: &mut DbConn,
    kind: OrderKind,
    element: &str,
    form: &str,
    grade: &str,
    quantity_g: i64,
) -> ApiResult<(model::Plan, Vec<Supply>)> {
    let supplies = supplies(conn, element, form, grade)?;
    let start = today();
    let plan = allocation(element, form, grade, quantity_g, &supplies, start)?;
    let policy = crate::policy::repo::current(conn, element)?.policy();
    check_limits(kind, element, quantity_g, &plan, start, &policy, || {
        crate::ledger::limits::holding(conn, element)
    })?;
    Ok((plan, supplies))
}

/// The allocation of `quantity_g` of the material over `supplies`, starting
/// on `start`; 409 when the depots hold too little.
fn allocation(
    element: &str,
    form: &str,
    grade: &str,
    quantity_g: i64,
    supplies: &[Supply],
    start: NaiveDate,
) -> ApiResult<model::Plan> {
    let inputs: Vec<model::DepotSupply> = supplies.iter().map(|s| s.supply.clone()).collect();
    model::allocate(quantity_g, &inputs, start).map_err(|e| match e {
        model::AllocationError::Insufficient { available_g, requested_g } => ApiError::conflict(
            "insufficient-stock",
            format!(
                "quantity_kg: {element} {form} grade {grade} has {} kg available at active depots (not held by other orders); {} kg requested",
                Grams(available_g),
                Grams(requested_g)
            ),
            json!({
                "element": element, "form": form, "grade": grade,
                "available_kg": Grams(available_g).to_kg_string(),
                "requested_kg": Grams(requested_g).to_kg_string(),
            }),
        ),
    })
}

/// Checks a planned order against the element's policy and reserve floor;
/// `holding` (grams on hand and reserved, every depot) is asked only when a
/// floor applies.
fn check_limits(
    kind: OrderKind,
    element: &str,
    quantity_g: i64,
    plan: &model::Plan,
    start: NaiveDate,
    policy: &ElementPolicy,
    holding: impl FnOnce() -> ApiResult<(i64, i64)>,
) -> ApiResult<()> {
    let plan_days = (plan.expected_completion - start).num_days() + 1;
    model::check_policy(
        kind,
        quantity_g,
        plan_days,
        policy.limited_drawdown_max.map(|g| g.0),
        policy.limited_drawdown_max_days.map(|d| d.get()),
        policy.test_sale_max.map(|g| g.0),
    )
    .map_err(|b| {
        let (detail, context) = match b {
            PolicyBreach::LimitedDrawdownQuantity { max_g } => (
                format!("quantity_kg: a limited drawdown of {element} may move at most {} kg", Grams(max_g)),
                json!({ "limited_drawdown_max_kg": Grams(max_g).to_kg_string() }),
            ),
            PolicyBreach::LimitedDrawdownDuration { max_days, plan_days } => (
                format!("a limited drawdown must complete within {max_days} days; at the depots' drawdown rates this one takes {plan_days}"),
                json!({ "limited_drawdown_max_days": max_days, "plan_days": plan_days }),
            ),
            PolicyBreach::TestSaleQuantity { max_g } => (
                format!("quantity_kg: a test sale of {element} may move at most {} kg", Grams(max_g)),
                json!({ "test_sale_max_kg": Grams(max_g).to_kg_string() }),
            ),
        };
        ApiError::conflict("policy-limit-exceeded", detail, context)
    })?;
    let floor = policy.reserve_floor.map(|g| g.0);
    if let Some(floor) = floor.filter(|_| kind != OrderKind::EmergencyDrawdown) {
        let (on_hand, reserved) = holding()?;
        let after = on_hand - reserved - quantity_g;
        if after < floor {
            return Err(ApiError::conflict(
                "below-reserve-floor",
                format!(
                    "quantity_kg: after this order and those already approved, {element} would hold {} kg, below its reserve floor of {} kg; only an emergency drawdown may go below it",
                    Grams(after),
                    Grams(floor)
                ),
                json!({
                    "element": element,
                    "reserve_floor_kg": Grams(floor).to_kg_string(),
                    "holding_after_kg": Grams(after).to_kg_string(),
                    "headroom_kg": Grams((after + quantity_g - floor).max(0)).to_kg_string(),
                }),
            ));
        }
    }
    Ok(())
}

fn store_allocation(
    conn: &mut DbConn,
    id: i64,
    plan: &model::Plan,
    supplies: &[Supply],
) -> ApiResult<()> {
    diesel::delete(oa::table.filter(oa::order_id.eq(id))).execute(conn)?;
    insert_allocation(conn, id, plan, supplies)?;
    diesel::update(ro::table.filter(ro::id.eq(id)))
        .set(ro::expected_completion.eq(Some(plan.expected_completion)))
        .execute(conn)?;
    Ok(())
}

/// One row of a new order's allocation.
struct AllocationRow {
    depot_id: i64,
    stockpile_id: i64,
    quantity_g: i64,
    deliver_by: NaiveDate,
}

/// The allocation rows of `plan`, which was made from `supplies`.
fn allocation_rows(plan: &model::Plan, supplies: &[Supply]) -> ApiResult<Vec<AllocationRow>> {
    plan.allocations
        .iter()
        .map(|a| {
            let s = supplies
                .iter()
                .find(|s| s.supply.depot == a.depot)
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("allocation names an unknown depot"))
                })?;
            Ok(AllocationRow {
                depot_id: s.depot_id,
                stockpile_id: s.stockpile_id,
                quantity_g: a.quantity_g,
                deliver_by: a.deliver_by,
            })
        })
        .collect()
}

fn insert_allocation(
    conn: &mut DbConn,
    id: i64,
    plan: &model::Plan,
    supplies: &[Supply],
) -> ApiResult<()> {
    let rows = allocation_rows(plan, supplies)?;
    insert_allocation_rows(conn, &[(id, &rows)])
}

/// The allocation rows of several orders, by order id, in one statement.
fn insert_allocation_rows(conn: &mut DbConn, orders: &[(i64, &[AllocationRow])]) -> ApiResult<()> {
    let values: Vec<_> = orders
        .iter()
        .flat_map(|(id, rows)| {
            rows.iter().map(move |a| {
                (
                    oa::order_id.eq(*id),
                    oa::depot_id.eq(a.depot_id),
                    oa::stockpile_id.eq(Some(a.stockpile_id)),
                    oa::quantity_g.eq(a.quantity_g),
                    oa::reserved_g.eq(0i64),
                    oa::released_g.eq(0i64),
                    oa::deliver_by.eq(a.deliver_by),
                )
            })
        })
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    // The shared connection type cannot write a multi-row INSERT. 7 bind
    // parameters a row: 7,000 a statement, under SQLite's 32,766.
    for chunk in values.chunks(1000) {
        let insert = diesel::insert_into(oa::table).values(chunk);
        crate::per_backend!(conn, |c| insert.execute(c)?);
    }
    Ok(())
}

/// A new order's row, as `propose` stores it.
#[derive(Insertable)]
#[diesel(table_name = ro, treat_none_as_default_value = false)]
struct NewOrderRow<'a> {
    kind: &'a str,
    status: &'a str,
    element: &'a str,
    form: &'a str,
    grade: &'a str,
    quantity_g: i64,
    method: &'a str,
    authority: &'a str,
    reason: &'a str,
    counterparty: Option<&'a str>,
    emergency_finding: Option<&'a str>,
    law: Option<&'a str>,
    fiscal_year: Option<i32>,
    premium_percent: Option<String>,
    return_due: Option<NaiveDate>,
    late_premium_percent_per_day: Option<String>,
    released_g: i64,
    returned_g: i64,
    proposed_by: &'a str,
    rule_id: Option<i64>,
    expected_completion: Option<NaiveDate>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl<'a> NewOrderRow<'a> {
    fn of(
        o: &'a NewOrder,
        plan: &model::Plan,
        actor: &'a str,
        rule_id: Option<i64>,
        now: NaiveDateTime,
    ) -> NewOrderRow<'a> {
        NewOrderRow {
            kind: o.kind.as_str(),
            status: Status::Proposed.as_str(),
            element: o.element.as_str(),
            form: o.form.as_str(),
            grade: o.grade.as_str(),
            quantity_g: o.quantity.0,
            method: o.method.as_str(),
            authority: &o.authority,
            reason: &o.reason,
            counterparty: o.counterparty.as_deref(),
            emergency_finding: o.emergency_finding.as_deref(),
            law: o.law.as_deref(),
            fiscal_year: o.fiscal_year,
            premium_percent: o.premium_percent.map(|d| d.to_string()),
            return_due: o.return_due,
            late_premium_percent_per_day: o.late_premium_percent_per_day.map(|d| d.to_string()),
            released_g: 0,
            returned_g: 0,
            proposed_by: actor,
            rule_id,
            expected_completion: Some(plan.expected_completion),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A new order's first transition: from nothing to `proposed`.
fn first_transition(o: &NewOrder) -> Transition<'_> {
    Transition {
        seq: 1,
        kind: o.kind.as_str(),
        element: o.element.as_str(),
        from: None,
        to: Status::Proposed,
    }
}

/// Proposes an order by hand: validates it against the policy, plans its
/// allocation, and stores it as `proposed` through [`insert_proposed`], the
/// one writer of new orders (release rules propose theirs in batches).
pub fn propose(conn: &mut DbConn, actor: &str, o: &NewOrder) -> ApiResult<OrderView> {
    let (element, form, grade) = (o.element.as_str(), o.form.as_str(), o.grade.as_str());
    let (plan, supplies) = plan(conn, o.kind, element, form, grade, o.quantity.0)?;
    let planned = Planned {
        allocations: allocation_rows(&plan, &supplies)?,
        order: o.clone(),
        plan,
    };
    let (id, event) = insert_proposed(conn, &[(None, actor, &planned)])?
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no order stored")))?;
    events::repo::stage_all(conn, std::slice::from_ref(&event))?;
    view(conn, id)
}

/// A new order planned and checked on stock and a policy read beforehand:
/// what [`insert_proposed`] stores.
pub struct Planned {
    order: NewOrder,
    plan: model::Plan,
    allocations: Vec<AllocationRow>,
}

/// Plans `o` on `supplies` (its material at active depots) from `start`, and
/// checks it against its element's `policy` and `holding` (grams on hand and
/// reserved at every depot): what `propose` does on what it reads itself,
/// for a caller that read all of it for many orders at once. Refuses as
/// `propose` would.
pub fn plan_new(
    o: NewOrder,
    supplies: &[Supply],
    policy: &ElementPolicy,
    holding: (i64, i64),
    start: NaiveDate,
) -> ApiResult<Planned> {
    let (element, form, grade) = (o.element.as_str(), o.form.as_str(), o.grade.as_str());
    let quantity_g = o.quantity.0;
    let plan = allocation(element, form, grade, quantity_g, supplies, start)?;
    check_limits(o.kind, element, quantity_g, &plan, start, policy, || {
        Ok(holding)
    })?;
    let allocations = allocation_rows(&plan, supplies)?;
    Ok(Planned {
        order: o,
        plan,
        allocations,
    })
}

/// Stores new orders as `proposed`: the orders, their allocations and their
/// first transitions, one statement per table for all of them. `proposals`
/// are (rule id, actor, order): one order by hand (no rule), or any number
/// that release rules propose, one per rule. Returns each order's id and its
/// `order.proposed` event, in the order given; the caller stages the events
/// where they belong among its own.
pub fn insert_proposed(
    conn: &mut DbConn,
    proposals: &[(Option<i64>, &str, &Planned)],
) -> ApiResult<Vec<(i64, events::repo::NewEvent)>> {
    if proposals.is_empty() {
        return Ok(Vec::new());
    }
    let at = types::now();
    let now = types::to_db(at);
    let rows: Vec<NewOrderRow> = proposals
        .iter()
        .map(|(rule, actor, p)| NewOrderRow::of(&p.order, &p.plan, actor, *rule, now))
        .collect();
    let insert = diesel::insert_into(ro::table)
        .values(rows)
        .returning((ro::id, ro::rule_id));
    // RETURNING's row order is unspecified (SQLite says so): match by rule,
    // which needs the rules distinct (a lone order by hand has none).
    let stored: Vec<(i64, Option<i64>)> = crate::per_backend!(conn, |c| insert.get_results(c)?);
    let by_rule: std::collections::HashMap<Option<i64>, i64> =
        stored.into_iter().map(|(id, rule)| (rule, id)).collect();
    if by_rule.len() != proposals.len() {
        return Err(ApiError::internal(anyhow::anyhow!(
            "a batch of new orders needs one distinct rule each"
        )));
    }
    let ids: Vec<i64> = proposals.iter().map(|(rule, _, _)| by_rule[rule]).collect();
    let allocations: Vec<(i64, &[AllocationRow])> = ids
        .iter()
        .zip(proposals)
        .map(|(id, (_, _, p))| (*id, p.allocations.as_slice()))
        .collect();
    insert_allocation_rows(conn, &allocations)?;
    let transitions: Vec<_> = ids
        .iter()
        .zip(proposals)
        .map(|(id, (_, actor, p))| {
            let t = first_transition(&p.order);
            (
                ot::order_id.eq(*id),
                ot::seq.eq(t.seq),
                ot::at.eq(now),
                ot::actor.eq(*actor),
                ot::from_status.eq(t.from),
                ot::to_status.eq(t.to.as_str()),
                ot::note.eq(None::<&str>),
            )
        })
        .collect();
    let insert = diesel::insert_into(ot::table).values(transitions);
    crate::per_backend!(conn, |c| insert.execute(c)?);
    Ok(ids
        .iter()
        .zip(proposals)
        .map(|(&id, (_, actor, p))| {
            let event = transition_event(id, actor, &first_transition(&p.order), None, at);
            (id, event)
        })
        .collect())
}

/// Approval by a second person: plans again on today's stock and reserves
/// the allocation, each stockpile's reservation taken by a conditional
/// UPDATE that refuses to reserve more than is available.
pub fn approve(
    conn: &mut DbConn,
    approver: &str,
    id: i64,
    note: Option<&str>,
) -> ApiResult<OrderView> {
    let mut row = lock(conn, id, &[Status::Proposed], "approve")?;
    if row.proposed_by == approver {
        return Err(ApiError::SameSubject(format!(
            "{approver} proposed order {id}; a different approver must approve it"
        )));
    }
    let (plan, supplies) = plan(
        conn,
        row.kind(),
        &row.element,
        &row.form,
        &row.grade,
        row.quantity_g,
    )?;
    store_allocation(conn, id, &plan, &supplies)?;
    let mut by_stockpile: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for a in &plan.allocations {
        let s = supplies
            .iter()
            .find(|s| s.supply.depot == a.depot)
            .expect("planned from supplies");
        by_stockpile.insert(s.stockpile_id, (s.depot_id, a.quantity_g));
    }
    for (stockpile_id, (depot_id, g)) in by_stockpile {
        let reserved = diesel::update(
            stockpiles::table
                .filter(stockpiles::id.eq(stockpile_id))
                .filter((stockpiles::on_hand_g - stockpiles::reserved_g).ge(g)),
        )
        .set(stockpiles::reserved_g.eq(stockpiles::reserved_g + g))
        .execute(conn)?;
        if reserved == 0 {
            return Err(ApiError::conflict(
                "insufficient-stock",
                format!(
                    "order {id} cannot be approved: another order reserved the stock it was planned on meanwhile; try again"
                ),
                json!({ "order_id": id, "stockpile_id": stockpile_id }),
            ));
        }
        diesel::update(
            oa::table
                .filter(oa::order_id.eq(id))
                .filter(oa::depot_id.eq(depot_id)),
        )
        .set(oa::reserved_g.eq(g))
        .execute(conn)?;
    }
    diesel::update(ro::table.filter(ro::id.eq(id)))
        .set(ro::approved_by.eq(Some(approver)))
        .execute(conn)?;
    transition(conn, &mut row, approver, Status::Approved, note)?;
    view(conn, id)
}

pub fn reject(conn: &mut DbConn, actor: &str, id: i64, note: Option<&str>) -> ApiResult<OrderView> {
    let mut row = lock(conn, id, &[Status::Proposed], "reject")?;
    transition(conn, &mut row, actor, Status::Rejected, note)?;
    view(conn, id)
}

/// Gives back every gram the order still holds reserved, exactly.
fn void_reservations(conn: &mut DbConn, id: i64) -> ApiResult<()> {
    let held: Vec<(i64, Option<i64>, i64)> = oa::table
        .filter(oa::order_id.eq(id))
        .filter(oa::reserved_g.gt(0))
        .order(oa::stockpile_id.asc())
        .select((oa::depot_id, oa::stockpile_id, oa::reserved_g))
        .load(conn)?;
    for (depot_id, stockpile_id, g) in held {
        let Some(stockpile_id) = stockpile_id else {
            continue;
        };
        let n = diesel::update(
            stockpiles::table
                .filter(stockpiles::id.eq(stockpile_id))
                .filter(stockpiles::reserved_g.ge(g)),
        )
        .set(stockpiles::reserved_g.eq(stockpiles::reserved_g - g))
        .execute(conn)?;
        if n == 0 {
            return Err(ApiError::internal(anyhow::anyhow!(
                "stockpile {stockpile_id} holds less reserved than order {id} reserved on it"
            )));
        }
        diesel::update(
            oa::table
                .filter(oa::order_id.eq(id))
                .filter(oa::depot_id.eq(depot_id)),
        )
        .set(oa::reserved_g.eq(0i64))
        .execute(conn)?;
    }
    Ok(())
}

/// Cancels the order and voids what it still holds reserved. The proposer,
/// an approver or an admin may cancel.
pub fn cancel(
    conn: &mut DbConn,
    user: &AuthUser,
    id: i64,
    note: Option<&str>,
) -> ApiResult<OrderView> {
    let mut row = lock(conn, id, &Status::CANCELLABLE, "cancel")?;
    let allowed = row.proposed_by == user.subject
        || user.has(crate::auth::Role::Approver)
        || user.has(crate::auth::Role::Admin);
    if !allowed {
        return Err(ApiError::Forbidden(
            "only the proposer, an approver or an admin may cancel an order".into(),
        ));
    }
    void_reservations(conn, id)?;
    transition(conn, &mut row, &user.subject, Status::Cancelled, note)?;
    view(conn, id)
}

/// Opens bidding on an approved sale.
pub fn notice(conn: &mut DbConn, actor: &str, id: i64, n: &Notice) -> ApiResult<OrderView> {
    let mut row = lock(conn, id, &[Status::Approved], "offer")?;
    if row.method() != Method::Sale {
        return Err(ApiError::conflict(
            "order-state",
            format!(
                "order {id} is delivered {}; only a sale takes bids",
                row.method
            ),
            json!({ "order_id": id, "method": row.method }),
        ));
    }
    if n.closes_at <= types::now() {
        return Err(ApiError::field("closes_at", "must lie in the future"));
    }
    diesel::update(ro::table.filter(ro::id.eq(id)))
        .set((
            ro::closes_at.eq(Some(types::to_db(n.closes_at))),
            ro::minimum_price_micros.eq(n.minimum_price.map(|p| p.0)),
            ro::currency.eq(Some(&n.currency)),
        ))
        .execute(conn)?;
    transition(conn, &mut row, actor, Status::Offered, None)?;
    view(conn, id)
}

/// A sealed bid from a registered buyer, before the notice closes. Takes the
/// order's row lock, as the award does, so no bid slips in after an award
/// whatever the replicas' clocks say.
pub fn bid(
    conn: &mut DbConn,
    buyer: &str,
    id: i64,
    quantity: Grams,
    price: Micros,
) -> ApiResult<BidView> {
    let registered: i64 = buyers::table
        .filter(buyers::code.eq(buyer))
        .count()
        .get_result(conn)?;
    if registered == 0 {
        return Err(ApiError::Forbidden(format!(
            "{buyer} is not a registered buyer; an admin registers buyers at POST /api/v1/buyers"
        )));
    }
    let row = lock(conn, id, &[Status::Offered], "bid on")?;
    let now = types::now();
    let closes_at = row.closes_at.map(types::from_db);
    if closes_at.is_none_or(|c| now >= c) {
        return Err(ApiError::conflict(
            "bidding-closed",
            format!(
                "bidding on order {id} closed at {}",
                closes_at.map(types::rfc3339).unwrap_or_default()
            ),
            json!({ "order_id": id, "closes_at": closes_at.map(types::rfc3339) }),
        ));
    }
    let mut e = Vec::new();
    if quantity.0 > row.quantity_g {
        e.push(FieldError::new(
            "quantity_kg",
            format!("the sale offers {} kg", Grams(row.quantity_g)),
        ));
    }
    if let Some(min) = row.minimum_price_micros.filter(|m| price.0 < *m) {
        e.push(FieldError::new(
            "price_per_kg",
            format!(
                "is below the minimum price of {} per kg",
                Micros(min).to_decimal_string()
            ),
        ));
    }
    if !e.is_empty() {
        return Err(ApiError::Validation(e));
    }
    let bid_id: i64 = diesel::insert_into(bids::table)
        .values((
            bids::order_id.eq(id),
            bids::buyer.eq(buyer),
            bids::quantity_g.eq(quantity.0),
            bids::price_micros.eq(price.0),
            bids::placed_at.eq(types::to_db(now)),
        ))
        .returning(bids::id)
        .get_result(conn)?;
    Ok(BidView {
        id: bid_id,
        order_id: id,
        buyer: buyer.to_string(),
        quantity_kg: quantity.to_kg_string(),
        price_per_kg: price.to_decimal_string(),
        currency: row.currency.unwrap_or_default(),
        placed_at: types::rfc3339(now),
    })
}

type BidRow = (i64, String, i64, i64, NaiveDateTime);

fn load_bids(conn: &mut DbConn, id: i64, buyer: Option<&str>) -> ApiResult<Vec<BidRow>> {
    let mut q = bids::table
        .filter(bids::order_id.eq(id))
        .select((
            bids::id,
            bids::buyer,
            bids::quantity_g,
            bids::price_micros,
            bids::placed_at,
        ))
        .order(bids::id.asc())
        .into_boxed();
    if let Some(b) = buyer {
        q = q.filter(bids::buyer.eq(b.to_string()));
    }
    Ok(q.load(conn)?)
}

/// The bids a caller may see: a bidder its own; others all of them, once
/// the sale is awarded (bids are sealed until then).
pub fn visible_bids(conn: &mut DbConn, user: &AuthUser, id: i64) -> ApiResult<Vec<BidView>> {
    let row = find(conn, id)?;
    let own_only = user.has(crate::auth::Role::Bidder)
        && !(user.has(crate::auth::Role::Approver) || user.has(crate::auth::Role::Auditor));
    let sealed = matches!(
        row.status(),
        Status::Proposed | Status::Approved | Status::Offered
    );
    if !own_only && sealed {
        return Err(ApiError::Forbidden(
            "bids are sealed until the award; a bidder sees only its own".into(),
        ));
    }
    let rows = load_bids(conn, id, own_only.then_some(user.subject.as_str()))?;
    Ok(rows
        .into_iter()
        .map(|(bid_id, buyer, q, p, at)| BidView {
            id: bid_id,
            order_id: id,
            buyer,
            quantity_kg: Grams(q).to_kg_string(),
            price_per_kg: Micros(p).to_decimal_string(),
            currency: row.currency.clone().unwrap_or_default(),
            placed_at: types::rfc3339(types::from_db(at)),
        })
        .collect())
}

/// Awards a closed sale from its stored bids: highest price first, ties to
/// the earlier bid, the last winner filled in part (`model::award`).
pub fn award(conn: &mut DbConn, actor: &str, id: i64) -> ApiResult<OrderView> {
    let mut row = lock(conn, id, &[Status::Offered], "award")?;
    let closes_at = row.closes_at.map(types::from_db);
    if closes_at.is_some_and(|c| types::now() < c) {
        return Err(ApiError::conflict(
            "bidding-open",
            format!(
                "bidding on order {id} closes at {}; award after that",
                closes_at.map(types::rfc3339).unwrap_or_default()
            ),
            json!({ "order_id": id, "closes_at": closes_at.map(types::rfc3339) }),
        ));
    }
    let bids: Vec<model::Bid> = load_bids(conn, id, None)?
        .into_iter()
        .map(|(bid_id, buyer, q, p, at)| model::Bid {
            id: bid_id,
            buyer,
            quantity_g: q,
            price_micros: p,
            placed_at_micros: at.and_utc().timestamp_micros(),
        })
        .collect();
    let awards = model::award(row.quantity_g, &bids);
    if awards.is_empty() {
        return Err(ApiError::conflict(
            "no-bids",
            format!("order {id} received no bids; cancel it, or propose a new sale"),
            json!({ "order_id": id }),
        ));
    }
    for a in &awards {
        diesel::insert_into(awards::table)
            .values((
                awards::order_id.eq(id),
                awards::bid_id.eq(a.bid_id),
                awards::buyer.eq(&a.buyer),
                awards::quantity_g.eq(a.quantity_g),
                awards::price_micros.eq(a.price_micros),
                awards::delivered_g.eq(0i64),
            ))
            .execute(conn)?;
    }
    transition(conn, &mut row, actor, Status::Awarded, None)?;
    view(conn, id)
}

/// What an execution must deliver in all: a sale its awards, others the order.
fn target_g(conn: &mut DbConn, row: &OrderRow) -> ApiResult<i64> {
    if row.method() == Method::Sale {
        let awarded: Vec<i64> = awards::table
            .filter(awards::order_id.eq(row.id))
            .select(awards::quantity_g)
            .load(conn)?;
        Ok(awarded.iter().sum())
    } else {
        Ok(row.quantity_g)
    }
}

/// Posts one delivery of an order through `ledger::post`: a release (a
/// loan-out for an exchange) from one allocated depot, consuming that much of
/// the reservation in the same statement that locks the stockpile. Never more
/// than the depot's allocation (409 `over-allocation`), never past the depot's
/// daily drawdown (enforced by `post`).
pub fn execute(
    conn: &mut DbConn,
    settings: &LedgerSettings,
    user: &AuthUser,
    idempotency_key: &str,
    id: i64,
    x: &Execution,
) -> ApiResult<EntryRecord> {
    let probe = find(conn, id)?;
    let mut row = lock(conn, id, executable_from(probe.method()), "execute")?;
    let depot_code = x.depot.as_str();
    let alloc: Option<(i64, i64, i64, i64)> = oa::table
        .inner_join(depots::table)
        .filter(oa::order_id.eq(id))
        .filter(depots::code.eq(depot_code))
        .select((oa::depot_id, oa::quantity_g, oa::reserved_g, oa::released_g))
        .first(conn)
        .optional()?;
    let Some((depot_id, allocated, reserved, released)) = alloc else {
        return Err(ApiError::conflict(
            "over-allocation",
            format!("order {id} allocates nothing to depot {depot_code}"),
            json!({ "order_id": id, "depot": depot_code, "allocated_kg": "0.000", "remaining_kg": "0.000" }),
        ));
    };
    let q = x.quantity.0;
    if q > allocated - released {
        return Err(ApiError::conflict(
            "over-allocation",
            format!(
                "quantity_kg: order {id} allocates {} kg to {depot_code}, of which {} kg remain; {} kg requested",
                Grams(allocated),
                Grams(allocated - released),
                Grams(q)
            ),
            json!({
                "order_id": id, "depot": depot_code,
                "allocated_kg": Grams(allocated).to_kg_string(),
                "remaining_kg": Grams(allocated - released).to_kg_string(),
                "requested_kg": Grams(q).to_kg_string(),
            }),
        ));
    }
    let mut details = EntryDetails {
        reference: Some(
            x.reference
                .clone()
                .unwrap_or_else(|| format!("release-order-{id}")),
        ),
        counterparty: row.counterparty.clone(),
        note: x.note.clone(),
        ..Default::default()
    };
    let mut award_bid: Option<i64> = None;
    if row.method() == Method::Sale {
        let open: Vec<(i64, String, i64, i64, i64)> = awards::table
            .filter(awards::order_id.eq(id))
            .filter(awards::delivered_g.lt(awards::quantity_g))
            .select((
                awards::bid_id,
                awards::buyer,
                awards::quantity_g,
                awards::delivered_g,
                awards::price_micros,
            ))
            .load(conn)?;
        let chosen = match &x.buyer {
            Some(b) => open.iter().find(|a| &a.1 == b),
            None if open.len() == 1 => open.first(),
            None => {
                return Err(ApiError::field(
                    "buyer",
                    "this sale has several winners still to deliver to: name the buyer",
                ))
            }
        };
        let Some((bid_id, buyer, awarded, delivered, price)) = chosen else {
            return Err(ApiError::field(
                "buyer",
                "has no award of this sale left to deliver",
            ));
        };
        if q > awarded - delivered {
            return Err(ApiError::conflict(
                "over-allocation",
                format!(
                    "quantity_kg: {buyer} was awarded {} kg, of which {} kg remain to deliver",
                    Grams(*awarded),
                    Grams(awarded - delivered)
                ),
                json!({ "order_id": id, "buyer": buyer, "remaining_kg": Grams(awarded - delivered).to_kg_string() }),
            ));
        }
        details.counterparty = Some(buyer.clone());
        details.unit_price = Some(Micros(*price));
        details.currency = row.currency.clone();
        award_bid = Some(*bid_id);
    }
    let kind = if row.kind() == OrderKind::Exchange {
        EntryKind::LoanOut
    } else {
        EntryKind::Release
    };
    let leg = Leg {
        key: row.key(x.depot.clone(), None, None)?,
        kind,
        quantity: Grams(-q),
        occurred_at: x.occurred_at.unwrap_or_else(types::now),
        occurred_at_given: x.occurred_at.is_some(),
        details,
        field_prefix: String::new(),
    };
    let consumed = q.min(reserved);
    let mut records = post::post(
        conn,
        settings,
        Posting {
            actor: &user.subject,
            idempotency_key,
            legs: vec![leg],
            order: Some(OrderLink {
                order_id: id,
                consumes_reserved_g: consumed,
                floor_exempt: row.kind() == OrderKind::EmergencyDrawdown,
            }),
        },
    )?;
    diesel::update(
        oa::table
            .filter(oa::order_id.eq(id))
            .filter(oa::depot_id.eq(depot_id)),
    )
    .set((
        oa::released_g.eq(oa::released_g + q),
        oa::reserved_g.eq(oa::reserved_g - consumed),
    ))
    .execute(conn)?;
    if let Some(bid_id) = award_bid {
        diesel::update(
            awards::table
                .filter(awards::order_id.eq(id))
                .filter(awards::bid_id.eq(bid_id)),
        )
        .set(awards::delivered_g.eq(awards::delivered_g + q))
        .execute(conn)?;
    }
    row.released_g += q;
    diesel::update(ro::table.filter(ro::id.eq(id)))
        .set(ro::released_g.eq(row.released_g))
        .execute(conn)?;
    if row.status() != Status::Executing {
        transition(conn, &mut row, &user.subject, Status::Executing, None)?;
    }
    if row.released_g >= target_g(conn, &row)? {
        // A sale awarded less than offered leaves reservation behind: free it.
        void_reservations(conn, id)?;
        transition(conn, &mut row, &user.subject, Status::Completed, None)?;
    }
    records
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("an execution posts one entry")))
}

/// Takes back material lent by an exchange as a `loan_return` entry. Once
/// everything owed (premium and late premium included) is back, the exchange
/// is `returned`.
pub fn record_return(
    conn: &mut DbConn,
    settings: &LedgerSettings,
    user: &AuthUser,
    idempotency_key: &str,
    id: i64,
    r: &Return,
) -> ApiResult<EntryRecord> {
    let mut row = lock(
        conn,
        id,
        &[Status::Executing, Status::Completed],
        "take a return on",
    )?;
    if row.kind() != OrderKind::Exchange {
        return Err(ApiError::conflict(
            "order-state",
            format!(
                "order {id} is a {}; only an exchange takes returns",
                row.kind
            ),
            json!({ "order_id": id, "kind": row.kind }),
        ));
    }
    let owed = row.owed_g(today()).unwrap_or(0);
    let outstanding = owed - row.returned_g;
    if r.quantity.0 > outstanding {
        return Err(ApiError::conflict(
            "over-return",
            format!(
                "quantity_kg: order {id} owes {} kg more; {} kg was sent",
                Grams(outstanding.max(0)),
                r.quantity
            ),
            json!({ "order_id": id, "owed_kg": Grams(owed).to_kg_string(), "returned_kg": Grams(row.returned_g).to_kg_string(), "outstanding_kg": Grams(outstanding.max(0)).to_kg_string() }),
        ));
    }
    let leg = Leg {
        key: row.key(r.depot.clone(), r.form, r.grade.clone())?,
        kind: EntryKind::LoanReturn,
        quantity: r.quantity,
        occurred_at: r.occurred_at.unwrap_or_else(types::now),
        occurred_at_given: r.occurred_at.is_some(),
        details: EntryDetails {
            reference: Some(format!("release-order-{id}")),
            counterparty: row.counterparty.clone(),
            note: r.note.clone(),
            ..Default::default()
        },
        field_prefix: String::new(),
    };
    let mut records = post::post(
        conn,
        settings,
        Posting {
            actor: &user.subject,
            idempotency_key,
            legs: vec![leg],
            order: Some(OrderLink {
                order_id: id,
                consumes_reserved_g: 0,
                floor_exempt: false,
            }),
        },
    )?;
    row.returned_g += r.quantity.0;
    diesel::update(ro::table.filter(ro::id.eq(id)))
        .set(ro::returned_g.eq(row.returned_g))
        .execute(conn)?;
    if row.status() == Status::Completed && row.returned_g >= owed {
        transition(conn, &mut row, &user.subject, Status::Returned, None)?;
    }
    records
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a return posts one entry")))
}

pub fn insert_buyer(
    conn: &mut DbConn,
    actor: &str,
    code: &str,
    name: &str,
    country: &str,
) -> ApiResult<BuyerView> {
    let exists: i64 = buyers::table
        .filter(buyers::code.eq(code))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Err(ApiError::conflict(
            "buyer-exists",
            format!("a buyer with code {code} is already registered"),
            json!({ "buyer": code }),
        ));
    }
    let now = types::now();
    diesel::insert_into(buyers::table)
        .values((
            buyers::code.eq(code),
            buyers::name.eq(name),
            buyers::country.eq(country),
            buyers::created_at.eq(types::to_db(now)),
            buyers::created_by.eq(actor),
        ))
        .execute(conn)?;
    Ok(BuyerView {
        code: code.into(),
        name: name.into(),
        country: country.into(),
        created_at: types::rfc3339(now),
    })
}

pub fn list_buyers(conn: &mut DbConn) -> ApiResult<Vec<BuyerView>> {
    let rows: Vec<(String, String, String, NaiveDateTime)> = buyers::table
        .order(buyers::code.asc())
        .select((
            buyers::code,
            buyers::name,
            buyers::country,
            buyers::created_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(code, name, country, at)| BuyerView {
            code,
            name,
            country,
            created_at: types::rfc3339(types::from_db(at)),
        })
        .collect())
}

/// Filters of `GET /api/v1/release-orders`.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
    pub element: Option<String>,
    pub rule_id: Option<i64>,
    pub overdue: bool,
}

pub fn list(conn: &mut DbConn, f: &OrderFilter, page: &PageRequest) -> ApiResult<Vec<OrderView>> {
    let mut q = ro::table.select(ro::id).into_boxed();
    if let Some(s) = &f.status {
        q = q.filter(ro::status.eq(s.clone()));
    }
    if let Some(k) = &f.kind {
        q = q.filter(ro::kind.eq(k.clone()));
    }
    if let Some(e) = &f.element {
        q = q.filter(ro::element.eq(e.clone()));
    }
    if let Some(r) = f.rule_id {
        q = q.filter(ro::rule_id.eq(r));
    }
    if f.overdue {
        q = q
            .filter(ro::kind.eq(OrderKind::Exchange.as_str()))
            .filter(ro::status.eq_any([Status::Executing.as_str(), Status::Completed.as_str()]))
            .filter(ro::return_due.lt(today()));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(a)) => q.filter(ro::id.lt(a)).order(ro::id.desc()),
        (Order::NewestFirst, None) => q.order(ro::id.desc()),
        (Order::OldestFirst, Some(a)) => q.filter(ro::id.gt(a)).order(ro::id.asc()),
        (Order::OldestFirst, None) => q.order(ro::id.asc()),
    };
    let ids: Vec<i64> = q.limit(page.limit + 1).load(conn)?;
    ids.into_iter().map(|id| view(conn, id)).collect()
}

/// (at, actor, from, to, note) of one transition.
type TransitionRow = (
    NaiveDateTime,
    String,
    Option<String>,
    String,
    Option<String>,
);

/// The whole order as the API shows it.
pub fn view(conn: &mut DbConn, id: i64) -> ApiResult<OrderView> {
    let row = find(conn, id)?;
    let allocation: Vec<(String, i64, NaiveDate, i64, i64)> = oa::table
        .inner_join(depots::table)
        .filter(oa::order_id.eq(id))
        .order(depots::code.asc())
        .select((
            depots::code,
            oa::quantity_g,
            oa::deliver_by,
            oa::reserved_g,
            oa::released_g,
        ))
        .load(conn)?;
    let history: Vec<TransitionRow> = ot::table
        .filter(ot::order_id.eq(id))
        .order(ot::seq.asc())
        .select((ot::at, ot::actor, ot::from_status, ot::to_status, ot::note))
        .load(conn)?;
    let award_rows: Vec<(String, i64, i64, i64)> = awards::table
        .filter(awards::order_id.eq(id))
        .order(awards::bid_id.asc())
        .select((
            awards::buyer,
            awards::quantity_g,
            awards::price_micros,
            awards::delivered_g,
        ))
        .load(conn)?;
    let on = today();
    let owed = row.owed_g(on);
    let reserved: i64 = allocation.iter().map(|a| a.3).sum();
    Ok(OrderView {
        id,
        kind: row.kind.clone(),
        status: row.status.clone(),
        element: row.element.clone(),
        form: row.form.clone(),
        grade: row.grade.clone(),
        quantity_kg: Grams(row.quantity_g).to_kg_string(),
        method: row.method.clone(),
        authority: row.authority.clone(),
        reason: row.reason.clone(),
        counterparty: row.counterparty.clone(),
        emergency_finding: row.emergency_finding.clone(),
        law: row.law.clone(),
        fiscal_year: row.fiscal_year,
        premium_percent: row.premium_percent.clone(),
        return_due: row.return_due.map(|d| d.to_string()),
        late_premium_percent_per_day: row.late_premium_percent_per_day.clone(),
        reserved_kg: Grams(reserved).to_kg_string(),
        released_kg: Grams(row.released_g).to_kg_string(),
        owed_kg: owed.map(|g| Grams(g).to_kg_string()),
        returned_kg: Grams(row.returned_g).to_kg_string(),
        overdue: row.return_due.is_some_and(|due| {
            matches!(row.status(), Status::Executing | Status::Completed)
                && model::is_overdue(due, on, owed.unwrap_or(0), row.returned_g)
        }),
        proposed_by: row.proposed_by.clone(),
        approved_by: row.approved_by.clone(),
        rule_id: row.rule_id,
        allocation: allocation
            .into_iter()
            .map(|(depot, q, by, res, rel)| AllocationView {
                depot,
                quantity_kg: Grams(q).to_kg_string(),
                deliver_by: by.to_string(),
                reserved_kg: Grams(res).to_kg_string(),
                released_kg: Grams(rel).to_kg_string(),
            })
            .collect(),
        expected_completion: row.expected_completion.map(|d| d.to_string()),
        notice: row.closes_at.map(|c| NoticeView {
            closes_at: types::rfc3339(types::from_db(c)),
            minimum_price_per_kg: row
                .minimum_price_micros
                .map(|p| Micros(p).to_decimal_string()),
            currency: row.currency.clone().unwrap_or_default(),
        }),
        awards: award_rows
            .into_iter()
            .map(|(buyer, q, p, d)| AwardView {
                buyer,
                quantity_kg: Grams(q).to_kg_string(),
                price_per_kg: Micros(p).to_decimal_string(),
                delivered_kg: Grams(d).to_kg_string(),
            })
            .collect(),
        history: history
            .into_iter()
            .map(|(at, actor, from, to, note)| TransitionView {
                at: types::rfc3339(types::from_db(at)),
                actor,
                from,
                to,
                note,
            })
            .collect(),
        version: row.version,
        created_at: types::rfc3339(types::from_db(row.created_at)),
        updated_at: types::rfc3339(types::from_db(row.updated_at)),
    })
}
