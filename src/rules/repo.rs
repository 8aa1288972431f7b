//! Release rules in the database: settings with their history, and
//! evaluations. Every evaluation starts by taking the rule's row (a
//! conditional UPDATE), so evaluations of one rule — on demand, after an
//! ingest, on the schedule, from any replica — queue there, and each sees the
//! state (consecutive breaches, armed, open order) the previous one left.
//! Lock order: the rule row, then what `orders::repo::propose` takes.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;

use super::dto::{
    firing_order, EvaluationView, HistoryView, NewRule, OrderTemplate, RuleStateView, RuleView,
};
use super::model::{self, Measurement, Reason, Settings, Sizing, State, Stock};
use crate::db::schema::{
    release_orders as ro, release_rule_history as rh, release_rules as rr, rule_evaluations as ev,
    stockpiles,
};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::error::{ApiError, ApiResult};
use crate::events::repo::NewEvent;
use crate::http::pagination::{Order, PageRequest};
use crate::orders::model::OrderKind;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = rr)]
pub struct RuleRow {
    pub id: i64,
    pub element: String,
    pub origin_countries: Option<String>,
    pub window_days: i32,
    pub baseline_days: i32,
    pub drop_threshold_percent: String,
    pub consecutive_breaches: i32,
    pub cooldown_days: i32,
    pub coverage_fraction: String,
    pub cap_g: i64,
    pub floor_g: Option<i64>,
    pub floor_days_of_cover: Option<String>,
    pub order_kind: String,
    pub form: Option<String>,
    pub grade: Option<String>,
    pub order_template: String,
    pub enabled: bool,
    pub consecutive: i32,
    pub armed: bool,
    pub last_fired_at: Option<NaiveDateTime>,
    pub evaluation_count: i64,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub created_by: String,
    pub updated_at: NaiveDateTime,
    pub updated_by: String,
    pub deleted_at: Option<NaiveDateTime>,
}

fn dec(s: &str) -> Decimal {
    // Stored by this code from validated input; a bad value is a corrupt row.
    s.parse().unwrap_or(Decimal::ZERO)
}

impl RuleRow {
    pub fn origins(&self) -> Option<Vec<String>> {
        self.origin_countries
            .as_ref()
            .map(|s| s.split(',').map(str::to_string).collect())
    }

    pub fn settings(&self) -> Settings {
        Settings {
            window_days: self.window_days,
            baseline_days: self.baseline_days,
            drop_threshold_percent: dec(&self.drop_threshold_percent),
            consecutive_breaches: self.consecutive_breaches,
            cooldown_days: self.cooldown_days,
            coverage_fraction: dec(&self.coverage_fraction),
            cap_g: self.cap_g,
            floor_g: self.floor_g,
            floor_days_of_cover: self.floor_days_of_cover.as_deref().map(dec),
            enabled: self.enabled,
        }
    }

    pub fn state(&self) -> State {
        State {
            consecutive: self.consecutive,
            armed: self.armed,
            last_fired_at: self.last_fired_at.map(types::from_db),
        }
    }

    pub fn template(&self) -> OrderTemplate {
        serde_json::from_str(&self.order_template).unwrap_or_default()
    }

    pub fn kind(&self) -> OrderKind {
        OrderKind::parse(&self.order_kind).unwrap_or(OrderKind::LimitedDrawdown)
    }

    pub fn view(&self) -> RuleView {
        let t = self.template();
        let ts = |t: NaiveDateTime| types::rfc3339(types::from_db(t));
        RuleView {
            id: self.id,
            element: self.element.clone(),
            origin_countries: self.origins(),
            window_days: self.window_days,
            baseline_days: self.baseline_days,
            drop_threshold_percent: self.drop_threshold_percent.clone(),
            consecutive_breaches: self.consecutive_breaches,
            cooldown_days: self.cooldown_days,
            coverage_fraction: self.coverage_fraction.clone(),
            cap_kg: Grams(self.cap_g).to_kg_string(),
            floor_kg: self.floor_g.map(|g| Grams(g).to_kg_string()),
            floor_days_of_cover: self.floor_days_of_cover.clone(),
            order_kind: self.order_kind.clone(),
            enabled: self.enabled,
            form: self.form.clone(),
            grade: self.grade.clone(),
            authority: t.authority,
            method: t.method,
            counterparty: t.counterparty,
            emergency_finding: t.emergency_finding,
            premium_percent: t.premium_percent,
            return_after_days: t.return_after_days,
            late_premium_percent_per_day: t.late_premium_percent_per_day,
            state: RuleStateView {
                consecutive: self.consecutive,
                armed: self.armed,
                last_fired_at: self.last_fired_at.map(ts),
                evaluations: self.evaluation_count,
            },
            version: self.version,
            created_at: ts(self.created_at),
            created_by: self.created_by.clone(),
            updated_at: ts(self.updated_at),
            updated_by: self.updated_by.clone(),
        }
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("no release rule {id}"))
}

/// A live (not deleted) rule.
pub fn find(conn: &mut DbConn, id: i64) -> ApiResult<RuleRow> {
    rr::table
        .filter(rr::id.eq(id))
        .filter(rr::deleted_at.is_null())
        .select(RuleRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| not_found(id))
}

fn record_history(
    conn: &mut DbConn,
    row: &RuleRow,
    change: &str,
    before: Option<&RuleRow>,
    after: Option<&RuleRow>,
) -> ApiResult<()> {
    let json = |r: Option<&RuleRow>| r.map(|r| r.view().settings_json().to_string());
    diesel::insert_into(rh::table)
        .values((
            rh::rule_id.eq(row.id),
            rh::version.eq(row.version),
            rh::change.eq(change),
            rh::changed_at.eq(row.updated_at),
            rh::changed_by.eq(&row.updated_by),
            rh::before.eq(json(before)),
            rh::after.eq(json(after)),
        ))
        .execute(conn)?;
    Ok(())
}

/// A rule's settings as columns, written alike by create and replace.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = rr, treat_none_as_null = true)]
struct SettingsColumns<'a> {
    element: &'a str,
    origin_countries: Option<String>,
    window_days: i32,
    baseline_days: i32,
    drop_threshold_percent: String,
    consecutive_breaches: i32,
    cooldown_days: i32,
    coverage_fraction: String,
    cap_g: i64,
    floor_g: Option<i64>,
    floor_days_of_cover: Option<String>,
    order_kind: &'a str,
    form: Option<&'a str>,
    grade: Option<&'a str>,
    order_template: String,
    enabled: bool,
}

impl<'a> SettingsColumns<'a> {
    fn of(r: &'a NewRule) -> ApiResult<SettingsColumns<'a>> {
        let s = &r.settings;
        Ok(SettingsColumns {
            element: r.element.as_str(),
            origin_countries: r.origin_countries.as_ref().map(|o| o.join(",")),
            window_days: s.window_days,
            baseline_days: s.baseline_days,
            drop_threshold_percent: s.drop_threshold_percent.to_string(),
            consecutive_breaches: s.consecutive_breaches,
            cooldown_days: s.cooldown_days,
            coverage_fraction: s.coverage_fraction.to_string(),
            cap_g: s.cap_g,
            floor_g: s.floor_g,
            floor_days_of_cover: s.floor_days_of_cover.map(|d| d.to_string()),
            order_kind: r.order_kind.as_str(),
            form: r.form.map(|f| f.as_str()),
            grade: r.grade.as_ref().map(|g| g.as_str()),
            order_template: serde_json::to_string(&r.template).map_err(ApiError::internal)?,
            enabled: s.enabled,
        })
    }
}

/// Stores a new rule, armed and with no breaches counted.
pub fn create(conn: &mut DbConn, actor: &str, r: &NewRule) -> ApiResult<RuleView> {
    let now = types::to_db(types::now());
    let id: i64 = diesel::insert_into(rr::table)
        .values((
            SettingsColumns::of(r)?,
            rr::consecutive.eq(0),
            rr::armed.eq(true),
            rr::evaluation_count.eq(0i64),
            rr::version.eq(1i64),
            rr::created_at.eq(now),
            rr::created_by.eq(actor),
            rr::updated_at.eq(now),
            rr::updated_by.eq(actor),
        ))
        .returning(rr::id)
        .get_result(conn)?;
    let row = find(conn, id)?;
    record_history(conn, &row, "created", None, Some(&row))?;
    Ok(row.view())
}

/// What an `If-Match` on a rule demands: `None` for `*`.
pub type Expected = Option<i64>;

/// Takes the rule's row lock if it is live and at the expected version.
fn lock_for_change(conn: &mut DbConn, id: i64, expected: Expected) -> ApiResult<RuleRow> {
    crate::http::lock_at_version(
        conn,
        &format!("release rule {id}"),
        expected,
        |c| find(c, id),
        |r| r.version,
        |c, version| {
            diesel::update(
                rr::table
                    .filter(rr::id.eq(id))
                    .filter(rr::deleted_at.is_null())
                    .filter(rr::version.eq(version)),
            )
            .set(rr::version.eq(rr::version))
            .execute(c)
        },
    )
}

/// Replaces every setting of a rule. Breaches counted under the old
/// settings no longer count; the firing state (armed, last firing) stays,
/// so an edit cannot be used to skip a cooldown.
pub fn replace(
    conn: &mut DbConn,
    actor: &str,
    id: i64,
    expected: Expected,
    r: &NewRule,
) -> ApiResult<RuleView> {
    let before = lock_for_change(conn, id, expected)?;
    let now = types::to_db(types::now());
    diesel::update(rr::table.filter(rr::id.eq(id)))
        .set((
            SettingsColumns::of(r)?,
            rr::consecutive.eq(0),
            rr::version.eq(rr::version + 1),
            rr::updated_at.eq(now),
            rr::updated_by.eq(actor),
        ))
        .execute(conn)?;
    let after = find(conn, id)?;
    record_history(conn, &after, "updated", Some(&before), Some(&after))?;
    Ok(after.view())
}

/// Retires a rule: it stops evaluating and vanishes from lists; its
/// evaluations, history and orders stay on record.
pub fn delete(conn: &mut DbConn, actor: &str, id: i64, expected: Expected) -> ApiResult<()> {
    let before = lock_for_change(conn, id, expected)?;
    let now = types::to_db(types::now());
    diesel::update(rr::table.filter(rr::id.eq(id)))
        .set((
            rr::enabled.eq(false),
            rr::deleted_at.eq(Some(now)),
            rr::version.eq(rr::version + 1),
            rr::updated_at.eq(now),
            rr::updated_by.eq(actor),
        ))
        .execute(conn)?;
    let after: RuleRow = rr::table
        .filter(rr::id.eq(id))
        .select(RuleRow::as_select())
        .first(conn)?;
    record_history(conn, &after, "deleted", Some(&before), None)
}

pub struct RuleFilter {
    pub element: Option<String>,
    pub enabled: Option<bool>,
}

pub fn list(conn: &mut DbConn, f: &RuleFilter, page: &PageRequest) -> ApiResult<Vec<RuleView>> {
    let mut q = rr::table
        .filter(rr::deleted_at.is_null())
        .select(RuleRow::as_select())
        .into_boxed();
    if let Some(e) = &f.element {
        q = q.filter(rr::element.eq(e.clone()));
    }
    if let Some(en) = f.enabled {
        q = q.filter(rr::enabled.eq(en));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(c)) => q.filter(rr::id.lt(c)).order(rr::id.desc()),
        (Order::NewestFirst, None) => q.order(rr::id.desc()),
        (Order::OldestFirst, Some(c)) => q.filter(rr::id.gt(c)).order(rr::id.asc()),
        (Order::OldestFirst, None) => q.order(rr::id.asc()),
    };
    let rows: Vec<RuleRow> = q.limit(page.limit + 1).load(conn)?;
    Ok(rows.iter().map(RuleRow::view).collect())
}

type HistoryRow = (
    i64,
    String,
    NaiveDateTime,
    String,
    Option<String>,
    Option<String>,
);

pub fn history(conn: &mut DbConn, id: i64) -> ApiResult<Vec<HistoryView>> {
    let rows: Vec<HistoryRow> = rh::table
        .filter(rh::rule_id.eq(id))
        .order(rh::version.asc())
        .select((
            rh::version,
            rh::change,
            rh::changed_at,
            rh::changed_by,
            rh::before,
            rh::after,
        ))
        .load(conn)?;
    if rows.is_empty() {
        return Err(not_found(id));
    }
    let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(rows
        .into_iter()
        .map(|(version, change, at, actor, before, after)| HistoryView {
            version,
            change,
            at: types::rfc3339(types::from_db(at)),
            actor,
            before: parse(before),
            after: parse(after),
        })
        .collect())
}

/// What started an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Ingest,
    Schedule(DateTime<Utc>),
    Manual,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Ingest => "ingest",
            Trigger::Schedule(_) => "schedule",
            Trigger::Manual => "manual",
        }
    }

    fn slot(self) -> Option<NaiveDateTime> {
        match self {
            Trigger::Schedule(t) => Some(types::to_db(t)),
            _ => None,
        }
    }
}

/// Order statuses during which a rule's order still counts as open.
pub const OPEN_STATUSES: [&str; 5] = ["proposed", "approved", "offered", "awarded", "executing"];

pub fn open_order(conn: &mut DbConn, rule_id: i64) -> ApiResult<Option<i64>> {
    Ok(open_orders(conn, &[rule_id])?.remove(&rule_id))
}

/// An open order of each of `rule_ids` that has one, in one query.
fn open_orders(conn: &mut DbConn, rule_ids: &[i64]) -> ApiResult<HashMap<i64, i64>> {
    let rows: Vec<(Option<i64>, i64)> = ro::table
        .filter(ro::rule_id.eq_any(rule_ids))
        .filter(ro::status.eq_any(OPEN_STATUSES))
        .select((ro::rule_id, ro::id))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(rule, order)| rule.map(|r| (r, order)))
        .collect())
}

/// An element's holding across every depot, in material and element mass.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub on_hand_g: i64,
    pub reserved_g: i64,
    pub on_hand_element_g: Decimal,
    pub unreserved_element_g: Decimal,
}

/// One stockpile as a firing is sized against it and its order planned on:
/// a stockpile joined to its depot, in `StockBook::load`'s column order.
#[derive(Queryable)]
struct StockpileRow {
    id: i64,
    element: String,
    form: String,
    grade: String,
    on_hand_g: i64,
    reserved_g: i64,
    depot_id: i64,
    depot: String,
    depot_status: String,
    depot_rate_g_per_day: i64,
}

impl StockpileRow {
    fn depot_active(&self) -> bool {
        self.depot_status == "active"
    }
}

/// The stock of some elements, their forms' element-mass factors and their
/// policies, read in three queries: what sizing their rules' firings needs.
pub struct StockBook {
    stockpiles: Vec<StockpileRow>,
    factors: HashMap<(String, String), i64>,
    policies: crate::policy::repo::Policies,
}

impl StockBook {
    pub fn load<S: AsRef<str>>(conn: &mut DbConn, elements: &[S]) -> ApiResult<StockBook> {
        use crate::db::schema::depots;
        let names: Vec<&str> = elements.iter().map(AsRef::as_ref).collect();
        let stockpiles: Vec<StockpileRow> = stockpiles::table
            .inner_join(depots::table)
            .filter(stockpiles::element.eq_any(&names))
            .select((
                stockpiles::id,
                stockpiles::element,
                stockpiles::form,
                stockpiles::grade,
                stockpiles::on_hand_g,
                stockpiles::reserved_g,
                depots::id,
                depots::code,
                depots::status,
                depots::max_drawdown_g_per_day,
            ))
            .load(conn)?;
        Ok(StockBook {
            stockpiles,
            factors: crate::elements::repo::factors(conn)?,
            policies: crate::policy::repo::current_of(conn, &names)?,
        })
    }

    /// The form and grade a firing releases: the rule's, or else the one
    /// with the most available material of the element at active depots.
    pub fn material(&self, rule: &RuleRow) -> Option<(String, String, i64)> {
        let mut by_material: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
        for s in &self.stockpiles {
            if s.element == rule.element && s.depot_active() {
                *by_material.entry((&s.form, &s.grade)).or_default() += s.on_hand_g - s.reserved_g;
            }
        }
        let owned = |((f, g), a): (&(&str, &str), &i64)| (f.to_string(), g.to_string(), *a);
        match (&rule.form, &rule.grade) {
            (Some(f), Some(g)) => {
                let a = by_material
                    .get(&(f.as_str(), g.as_str()))
                    .copied()
                    .unwrap_or(0);
                Some((f.clone(), g.clone(), a))
            }
            (Some(f), None) => by_material
                .iter()
                .filter(|((form, _), _)| form == f)
                .max_by_key(|(_, a)| **a)
                .map(owned),
            _ => by_material.iter().max_by_key(|(_, a)| **a).map(owned),
        }
    }

    /// The stockpiles of a material at active depots: what `orders::repo`
    /// plans its order on (its `supplies`).
    fn supplies(&self, element: &str, form: &str, grade: &str) -> Vec<crate::orders::repo::Supply> {
        self.stockpiles
            .iter()
            .filter(|s| s.element == element && s.form == form && s.grade == grade)
            .filter(|s| s.depot_active())
            .map(|s| {
                crate::orders::repo::Supply::new(
                    s.depot_id,
                    s.id,
                    s.depot.clone(),
                    s.on_hand_g,
                    s.reserved_g,
                    s.depot_rate_g_per_day,
                )
            })
            .collect()
    }

    /// Grams of the element on hand and reserved, every form at every depot:
    /// what `ledger::limits::holding` sums.
    fn totals(&self, element: &str) -> (i64, i64) {
        self.stockpiles
            .iter()
            .filter(|s| s.element == element)
            .fold((0, 0), |(h, r), s| (h + s.on_hand_g, r + s.reserved_g))
    }

    /// The element's holding over the forms with a known factor, every depot.
    pub fn holding(&self, element: &str) -> Holding {
        let rows: Vec<(i64, i64, i64)> = self
            .stockpiles
            .iter()
            .filter(|s| s.element == element)
            .filter_map(|s| {
                let ppm = self.factors.get(&(s.element.clone(), s.form.clone()))?;
                Some((s.on_hand_g, s.reserved_g, *ppm))
            })
            .collect();
        let mass =
            |g: i64, ppm: i64| Decimal::from(g) * Decimal::from(ppm) / Decimal::from(1_000_000);
        Holding {
            on_hand_g: rows.iter().map(|r| r.0).sum(),
            reserved_g: rows.iter().map(|r| r.1).sum(),
            on_hand_element_g: rows.iter().map(|r| mass(r.0, r.2)).sum(),
            unreserved_element_g: rows.iter().map(|r| mass(r.0 - r.1, r.2)).sum(),
        }
    }

    /// The stock a firing of `rule` is sized against, releasing `form` of
    /// which `available_g` is available.
    pub fn stock(&self, rule: &RuleRow, form: &str, available_g: i64) -> ApiResult<Stock> {
        let h = self.holding(&rule.element);
        let form_ppm = *self
            .factors
            .get(&(rule.element.clone(), form.to_string()))
            .ok_or_else(|| {
                ApiError::NotFound(format!("no element form {} {form}", rule.element))
            })?;
        let policy = self.policies.get(&rule.element)?.policy();
        let kind = rule.kind();
        Ok(Stock {
            unreserved_g: h.on_hand_g - h.reserved_g,
            unreserved_element_g: h.unreserved_element_g,
            available_g,
            form_ppm,
            consumption_g_per_day: policy
                .consumption_per_year
                .map(|g| Decimal::from(g.0) / Decimal::from(365)),
            reserve_floor_g: policy
                .reserve_floor
                .map(|g| g.0)
                .filter(|_| kind != OrderKind::EmergencyDrawdown),
            policy_cap_g: match kind {
                OrderKind::LimitedDrawdown => policy.limited_drawdown_max.map(|g| g.0),
                OrderKind::TestSale => policy.test_sale_max.map(|g| g.0),
                _ => None,
            },
        })
    }
}

/// The human account of a measurement, for the order's reason and the
/// evaluation's detail.
fn describe(rule: &RuleRow, m: &Measurement) -> String {
    let origins = rule
        .origins()
        .map(|o| format!(" from {}", o.join(", ")))
        .unwrap_or_default();
    format!(
        "imports of {}{origins} over the {} days to {} averaged {} kg/day against {} kg/day over the {} days before: a drop of {}% (threshold {}%)",
        rule.element,
        rule.window_days,
        m.window.1,
        model::kg_per_day(m.window_g_per_day),
        model::kg_per_day(m.baseline_g_per_day),
        rule.baseline_days,
        model::percent(m.drop_percent),
        rule.drop_threshold_percent,
    )
}

/// The outcome of the decision part of an evaluation.
#[derive(Clone)]
struct Outcome {
    reason: Reason,
    detail: String,
    sizing: Option<Sizing>,
    order_id: Option<i64>,
    state: State,
}

/// The order a firing proposes, planned and checked, to be stored with the
/// evaluation; `unfired` is the outcome should storing it be refused.
struct Proposal {
    planned: crate::orders::repo::Planned,
    form: String,
    grade: String,
    unfired: Outcome,
}

/// The detail of an evaluation whose order was refused, from the refusal;
/// any other error is the evaluation's failure.
fn refusal(e: ApiError) -> ApiResult<String> {
    match e {
        ApiError::Validation(fields) => Ok(format!(
            "the release order was refused: {}",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        e @ ApiError::Conflict { .. } => Ok(format!("the release order was refused: {e}")),
        e => Err(e),
    }
}

/// Sizes, plans and checks the order for a rule that is ready to fire, on
/// the stock and policies read for the round. A refusal (the checks
/// `orders::repo::propose` makes) is the evaluation's outcome, not an error.
/// The order itself is stored with the other writes.
fn fire(
    book: &StockBook,
    rule: &RuleRow,
    m: &Measurement,
    state: State,
    now: DateTime<Utc>,
) -> ApiResult<(Outcome, Option<Proposal>)> {
    let not_fired = |reason, detail: String, sizing| Outcome {
        reason,
        detail,
        sizing,
        order_id: None,
        state,
    };
    let Some((form, grade, available_g)) = book.material(rule) else {
        return Ok((
            not_fired(
                Reason::FloorLeavesNothing,
                format!("the reserve holds no {} to release", rule.element),
                None,
            ),
            None,
        ));
    };
    let stock = book.stock(rule, &form, available_g)?;
    let sizing = model::size(&rule.settings(), m, &stock);
    if sizing.proposed_g <= 0 {
        let why = sizing.note.clone().unwrap_or_else(|| {
            format!(
                "the {} term leaves nothing to release ({} kg)",
                sizing.bound_by,
                Grams(sizing.proposed_g.max(0))
            )
        });
        return Ok((
            not_fired(Reason::FloorLeavesNothing, why, Some(sizing)),
            None,
        ));
    }
    let reason_text = format!("Release rule {}: {}", rule.id, describe(rule, m));
    let order = firing_order(
        rule.kind(),
        &rule.element,
        &form,
        &grade,
        sizing.proposed_g,
        &reason_text,
        &rule.template(),
        now.date_naive(),
    );
    let policy = book.policies.get(&rule.element)?.policy();
    let planned = order.and_then(|o| {
        crate::orders::repo::plan_new(
            o,
            &book.supplies(&rule.element, &form, &grade),
            &policy,
            book.totals(&rule.element),
            now.date_naive(),
        )
    });
    match planned {
        Ok(planned) => {
            let unfired = not_fired(Reason::OrderRefused, String::new(), Some(sizing.clone()));
            Ok((
                Outcome {
                    reason: Reason::Fired,
                    // Names the order: written once it is stored.
                    detail: String::new(),
                    sizing: Some(sizing),
                    order_id: None,
                    state: model::fired(&state, now),
                },
                Some(Proposal {
                    planned,
                    form,
                    grade,
                    unfired,
                }),
            ))
        }
        Err(e) => Ok((
            not_fired(Reason::OrderRefused, refusal(e)?, Some(sizing)),
            None,
        )),
    }
}

/// Evaluates rule `id` once and stores the evaluation. Runs inside a write
/// transaction; takes the rule's row lock first.
pub fn evaluate(
    conn: &mut DbConn,
    id: i64,
    trigger: Trigger,
    triggered_by: &str,
) -> ApiResult<EvaluationView> {
    match evaluate_all(conn, &[id], trigger, triggered_by, Isolation::None)?.pop() {
        Some((_, view)) => view,
        None => Err(not_found(id)),
    }
}

/// Whether each rule's evaluation runs in its own savepoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// The first failure fails the whole call.
    None,
    /// A rule's failure rolls back only its savepoint; the others run.
    Savepoint,
}

/// Takes the row locks of the live rules among `ids`, in id order, and reads
/// them under the lock: evaluations of one rule queue here, across replicas.
/// SQLite has no row locks: its write transaction already holds the database.
fn lock_rules(conn: &mut DbConn, ids: &[i64]) -> ApiResult<Vec<RuleRow>> {
    let q = rr::table
        .filter(rr::id.eq_any(ids))
        .filter(rr::deleted_at.is_null())
        .order(rr::id.asc())
        .select(rr::all_columns);
    Ok(match conn {
        DbConn::Postgres(c) => q.for_update().load(c)?,
        DbConn::Sqlite(c) => q.load(c)?,
    })
}

/// What one rule's evaluation measured, before it is decided.
struct Reading {
    horizon: Option<NaiveDate>,
    measurement: Option<Measurement>,
}

/// Measures every rule against its element's flows, read for all rules in
/// two queries (the horizons, then the flows over the widest span).
fn measure_all(conn: &mut DbConn, rules: &[RuleRow]) -> ApiResult<Vec<Reading>> {
    let mut elements: Vec<&str> = rules.iter().map(|r| r.element.as_str()).collect();
    elements.sort_unstable();
    elements.dedup();
    let horizons = crate::flows::repo::data_horizons(conn, &elements)?;
    let spans: Vec<Option<(NaiveDate, NaiveDate)>> = rules
        .iter()
        .map(|r| {
            let h = horizons.get(&r.element)?;
            let (window, baseline) = model::spans(&r.settings(), *h);
            Some((baseline.0, window.1))
        })
        .collect();
    let widest = spans
        .iter()
        .flatten()
        .copied()
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
    let flows = match widest {
        Some((from, to)) => crate::flows::repo::spans_of(conn, &elements, None, from, to)?,
        None => HashMap::new(),
    };
    let none = Vec::new();
    Ok(rules
        .iter()
        .zip(spans)
        .map(|(rule, span)| {
            let horizon = horizons.get(&rule.element).copied();
            let measurement = match (horizon, span) {
                (Some(h), Some((from, to))) => {
                    // The rows `flows::repo::spans` would return for the rule.
                    let origins = rule.origins();
                    let mine: Vec<_> = flows
                        .get(&rule.element)
                        .unwrap_or(&none)
                        .iter()
                        .filter(|f| f.period_end >= from && f.period_start <= to)
                        .filter(|f| {
                            origins
                                .as_ref()
                                .is_none_or(|o| o.contains(&f.origin_country))
                        })
                        .cloned()
                        .collect();
                    model::measure(&rule.settings(), &mine, h)
                }
                _ => None,
            };
            Reading {
                horizon,
                measurement,
            }
        })
        .collect())
}

/// Evaluates the live rules among `ids` once each and stores their
/// evaluations, in id order. Takes every rule's lock first, then reads what
/// all of them need in a few queries (flows, open orders, stock, policies),
/// decides each with `model`, and writes every rule's outcome (its state,
/// the evaluation, the proposed order, the events) in one statement per
/// table for all the rules. Should that fail, each rule's writes are made
/// again on their own, so that only the rule that fails fails (with
/// `Isolation::Savepoint`, in a savepoint of its own).
fn evaluate_all(
    conn: &mut DbConn,
    ids: &[i64],
    trigger: Trigger,
    triggered_by: &str,
    isolation: Isolation,
) -> ApiResult<Vec<(i64, ApiResult<EvaluationView>)>> {
    let rules = lock_rules(conn, ids)?;
    let now = types::now();
    let readings = measure_all(conn, &rules)?;
    let steps: Vec<model::Step> = rules
        .iter()
        .zip(&readings)
        .map(|(r, m)| {
            model::step(
                &r.settings(),
                &r.state(),
                m.measurement.as_ref(),
                false,
                now,
            )
        })
        .collect();
    // Whether its own order is still open, and the stock, matter only to a
    // rule that would otherwise fire: ask the database only for those.
    let ready: Vec<&RuleRow> = rules
        .iter()
        .zip(&steps)
        .filter(|(_, s)| s.verdict.is_ok())
        .map(|(r, _)| r)
        .collect();
    let (open, book) = if ready.is_empty() {
        (HashMap::new(), None)
    } else {
        let ids: Vec<i64> = ready.iter().map(|r| r.id).collect();
        let open = open_orders(conn, &ids)?;
        let mut elements: Vec<&str> = ready
            .iter()
            .filter(|r| !open.contains_key(&r.id))
            .map(|r| r.element.as_str())
            .collect();
        elements.sort_unstable();
        elements.dedup();
        let book = (!elements.is_empty())
            .then(|| StockBook::load(conn, &elements))
            .transpose()?;
        (open, book)
    };
    // Decide every rule first: nothing is written yet, so a rule that fails
    // here leaves nothing to roll back.
    let mut results: Vec<(i64, Option<ApiResult<EvaluationView>>)> = Vec::new();
    let mut batch: Vec<Prepared> = Vec::new();
    for ((rule, reading), step) in rules.iter().zip(&readings).zip(steps) {
        let decided = Decided {
            rule,
            reading,
            step,
            open: open.get(&rule.id).copied(),
            book: book.as_ref(),
        };
        match decided.prepare(now) {
            Ok(p) => {
                results.push((rule.id, None));
                batch.push(p);
            }
            Err(e) if isolation == Isolation::Savepoint => results.push((rule.id, Some(Err(e)))),
            Err(e) => return Err(e),
        }
    }
    let round = Round {
        trigger,
        triggered_by,
        now,
    };
    // In chunks, so that no statement passes the backends' bind parameter
    // limits (SQLite 32,766; an order row takes 24).
    let mut written: Vec<ApiResult<EvaluationView>> = Vec::with_capacity(batch.len());
    let mut rest = batch;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(ROUND_CHUNK));
        let chunk = std::mem::replace(&mut rest, tail);
        written.extend(round.write_chunk(conn, chunk, isolation)?);
    }
    written.reverse();
    Ok(results
        .into_iter()
        .map(|(id, r)| {
            let r = r.or_else(|| written.pop()).unwrap_or_else(|| {
                Err(ApiError::internal(anyhow::anyhow!(
                    "rule {id}: no evaluation written"
                )))
            });
            (id, r)
        })
        .collect())
}

/// One rule's evaluation, measured and stepped, ready to be decided.
struct Decided<'a> {
    rule: &'a RuleRow,
    reading: &'a Reading,
    step: model::Step,
    open: Option<i64>,
    book: Option<&'a StockBook>,
}

impl<'a> Decided<'a> {
    /// Decides the rule: whether it fires, what it proposes, its new state.
    fn prepare(&self, now: DateTime<Utc>) -> ApiResult<Prepared<'a>> {
        let rule = self.rule;
        let settings = rule.settings();
        let (horizon, measurement) = (self.reading.horizon, &self.reading.measurement);
        let mut step = self.step.clone();
        if step.verdict.is_ok() && self.open.is_some() {
            step = model::step(&settings, &rule.state(), measurement.as_ref(), true, now);
        }
        let (outcome, proposal) = match (&step.verdict, measurement, self.book) {
            (Ok(()), Some(m), Some(book)) => fire(book, rule, m, step.state, now)?,
            (Err(reason), _, _) => (
                Outcome {
                    reason: *reason,
                    detail: explain(
                        rule,
                        *reason,
                        measurement.as_ref(),
                        horizon,
                        self.open,
                        &step.state,
                    ),
                    sizing: None,
                    order_id: None,
                    state: step.state,
                },
                None,
            ),
            (Ok(()), _, _) => unreachable!("a rule without data or stock read never fires"),
        };
        Ok(Prepared {
            rule,
            reading: self.reading,
            breach: step.breach,
            outcome,
            proposal,
        })
    }
}

/// One rule's evaluation decided, to be written: its outcome and, when it
/// fires, the order it proposes.
struct Prepared<'a> {
    rule: &'a RuleRow,
    reading: &'a Reading,
    breach: bool,
    outcome: Outcome,
    proposal: Option<Proposal>,
}

impl Prepared<'_> {
    /// The outcome once the proposed order, if any, is stored as `order_id`.
    fn outcome(&self, order_id: Option<i64>) -> Outcome {
        let mut outcome = self.outcome.clone();
        if let (Some(p), Some(order_id), Some(m), Some(sizing)) = (
            &self.proposal,
            order_id,
            &self.reading.measurement,
            &outcome.sizing,
        ) {
            outcome.detail = format!(
                "fired: proposed release order {} for {} kg of {} {} grade {}, bound by {}; {}",
                order_id,
                sizing.proposed_kg,
                self.rule.element,
                p.form,
                p.grade,
                sizing.bound_by,
                describe(self.rule, m)
            );
            outcome.order_id = Some(order_id);
        }
        outcome
    }

    fn actor(&self) -> String {
        format!("rule:{}", self.rule.id)
    }
}

/// What every evaluation of one round shares.
struct Round<'a> {
    trigger: Trigger,
    triggered_by: &'a str,
    now: DateTime<Utc>,
}

/// Rules a round writes together at most: 24 bind parameters an order row,
/// 22 an evaluation row, so 12,000 a statement at most.
const ROUND_CHUNK: usize = 500;

impl Round<'_> {
    /// Writes `batch` together in a savepoint; should that fail, rule by
    /// rule, as each would alone (one rule goes that way at once). Returns
    /// each rule's evaluation in `batch`'s order; with `Isolation::None` the
    /// first failure fails the call.
    fn write_chunk(
        &self,
        conn: &mut DbConn,
        batch: Vec<Prepared>,
        isolation: Isolation,
    ) -> ApiResult<Vec<ApiResult<EvaluationView>>> {
        if batch.len() > 1 {
            match conn.transaction(|c| self.write(c, &batch)) {
                Ok(views) => return Ok(views.into_iter().map(Ok).collect()),
                Err(e) => tracing::warn!(
                    error = %e,
                    "writing the round's evaluations together failed; writing them rule by rule"
                ),
            }
        }
        let mut views = Vec::with_capacity(batch.len());
        for p in batch {
            views.push(match isolation {
                Isolation::None => Ok(self.write_one(conn, p)?),
                Isolation::Savepoint => conn.transaction(|c| self.write_one(c, p)),
            });
        }
        Ok(views)
    }

    /// Writes the evaluations of `batch`: the proposed orders, the rules'
    /// states, the evaluations and the events, one statement per table.
    /// Returns the evaluations in `batch`'s order.
    fn write(&self, conn: &mut DbConn, batch: &[Prepared]) -> ApiResult<Vec<EvaluationView>> {
        let actors: Vec<String> = batch.iter().map(Prepared::actor).collect();
        let proposals: Vec<(Option<i64>, &str, &crate::orders::repo::Planned)> = batch
            .iter()
            .zip(&actors)
            .filter_map(|(p, actor)| {
                let planned = &p.proposal.as_ref()?.planned;
                Some((Some(p.rule.id), actor.as_str(), planned))
            })
            .collect();
        let mut stored = crate::orders::repo::insert_proposed(conn, &proposals)?.into_iter();
        let orders: Vec<Option<(i64, NewEvent)>> = batch
            .iter()
            .map(|p| p.proposal.as_ref().and_then(|_| stored.next()))
            .collect();
        self.record(conn, batch, orders)
    }

    /// Writes one rule's evaluation, as if it were evaluated alone: its
    /// order is proposed in a savepoint, so that a refusal rolls back only
    /// the order and is stored as the evaluation's outcome.
    fn write_one(&self, conn: &mut DbConn, mut p: Prepared) -> ApiResult<EvaluationView> {
        let mut order = None;
        if let Some(proposal) = &p.proposal {
            let actor = p.actor();
            let proposed = conn.transaction(|c| {
                crate::orders::repo::insert_proposed(
                    c,
                    &[(Some(p.rule.id), actor.as_str(), &proposal.planned)],
                )
            });
            match proposed {
                Ok(mut stored) => order = stored.pop(),
                Err(e) => {
                    let mut unfired = proposal.unfired.clone();
                    unfired.detail = refusal(e)?;
                    p.outcome = unfired;
                    p.proposal = None;
                }
            }
        }
        let mut views = self.record(conn, std::slice::from_ref(&p), vec![order])?;
        views
            .pop()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no evaluation stored")))
    }

    /// Writes the rules' states, the evaluations and the events of `batch`
    /// whose orders (by position; `None` for a rule that proposes none) are
    /// stored already.
    fn record(
        &self,
        conn: &mut DbConn,
        batch: &[Prepared],
        orders: Vec<Option<(i64, NewEvent)>>,
    ) -> ApiResult<Vec<EvaluationView>> {
        let outcomes: Vec<Outcome> = batch
            .iter()
            .zip(&orders)
            .map(|(p, o)| p.outcome(o.as_ref().map(|(id, _)| *id)))
            .collect();
        let states: Vec<(i64, State)> = batch
            .iter()
            .zip(&outcomes)
            .map(|(p, o)| (p.rule.id, o.state))
            .collect();
        update_states(conn, &states)?;
        let views = self.insert_evaluations(conn, batch, &outcomes)?;
        // As one firing after another staged them: its order's event, then
        // the rule's.
        let mut events = Vec::new();
        for (((p, outcome), order), view) in batch.iter().zip(&outcomes).zip(orders).zip(&views) {
            if outcome.reason != Reason::Fired {
                continue;
            }
            if let Some((_, e)) = order {
                events.push(e);
            }
            let (rule, id) = (p.rule, p.rule.id);
            events.push(NewEvent {
                kind: crate::events::model::RULE_FIRED.to_string(),
                element: Some(rule.element.clone()),
                depot: None,
                subject: Some(format!("rule:{id}")),
                data: serde_json::json!({
                    "rule_id": id,
                    "element": rule.element,
                    "order_id": outcome.order_id,
                    "evaluation_id": view.id,
                    "drop_percent": view.drop_percent,
                    "proposed_kg": outcome.sizing.as_ref().map(|s| s.proposed_kg.clone()),
                    "detail": outcome.detail,
                }),
            });
        }
        crate::events::repo::stage_all(conn, &events)?;
        Ok(views)
    }

    /// The evaluation rows of `batch`, in one statement; their views in
    /// `batch`'s order.
    fn insert_evaluations(
        &self,
        conn: &mut DbConn,
        batch: &[Prepared],
        outcomes: &[Outcome],
    ) -> ApiResult<Vec<EvaluationView>> {
        let at = types::to_db(self.now);
        let rows: Vec<_> = batch
            .iter()
            .zip(outcomes)
            .map(|(p, outcome)| {
                let m = p.reading.measurement.as_ref();
                let fired = outcome.reason == Reason::Fired;
                (
                    ev::rule_id.eq(p.rule.id),
                    ev::rule_version.eq(p.rule.version),
                    ev::at.eq(at),
                    ev::trigger.eq(self.trigger.as_str()),
                    ev::slot.eq(self.trigger.slot()),
                    ev::triggered_by.eq(self.triggered_by),
                    ev::data_horizon.eq(p.reading.horizon),
                    ev::window_start.eq(m.map(|m| m.window.0)),
                    ev::window_end.eq(m.map(|m| m.window.1)),
                    ev::baseline_start.eq(m.map(|m| m.baseline.0)),
                    ev::baseline_end.eq(m.map(|m| m.baseline.1)),
                    ev::window_kg_per_day.eq(m.map(|m| model::kg_per_day(m.window_g_per_day))),
                    ev::baseline_kg_per_day.eq(m.map(|m| model::kg_per_day(m.baseline_g_per_day))),
                    ev::drop_percent.eq(m.map(|m| model::percent(m.drop_percent))),
                    ev::breach.eq(p.breach),
                    ev::consecutive.eq(outcome.state.consecutive),
                    ev::decision.eq(if fired { "fired" } else { "not_fired" }),
                    ev::reason.eq(outcome.reason.as_str()),
                    ev::detail.eq(outcome.detail.clone()),
                    ev::sizing.eq(outcome
                        .sizing
                        .as_ref()
                        .map(|s| serde_json::to_string(s).unwrap_or_default())),
                    ev::proposed_g.eq(outcome
                        .sizing
                        .as_ref()
                        .filter(|_| fired)
                        .map(|s| s.proposed_g)),
                    ev::order_id.eq(outcome.order_id),
                )
            })
            .collect();
        let insert = diesel::insert_into(ev::table)
            .values(rows)
            .returning(ev::all_columns);
        let stored: Vec<EvaluationRow> = crate::per_backend!(conn, |c| insert.get_results(c)?);
        // RETURNING's row order is unspecified: match by rule (one
        // evaluation a rule in a round).
        let mut by_rule: HashMap<i64, EvaluationRow> =
            stored.into_iter().map(|r| (r.rule_id, r)).collect();
        batch
            .iter()
            .map(|p| {
                by_rule
                    .remove(&p.rule.id)
                    .map(evaluation_view)
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!(
                            "no evaluation stored for rule {}",
                            p.rule.id
                        ))
                    })
            })
            .collect()
    }
}

/// Writes the rules' states after an evaluation each, in one statement:
/// the breaches counted, armed, the last firing, one more evaluation.
fn update_states(conn: &mut DbConn, states: &[(i64, State)]) -> ApiResult<()> {
    use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Timestamp};
    if states.is_empty() {
        return Ok(());
    }
    let postgres = matches!(conn, DbConn::Postgres(_));
    let sql = format!(
        "{} UPDATE release_rules SET consecutive = s.consecutive, armed = s.armed, \
         last_fired_at = s.last_fired_at, evaluation_count = evaluation_count + 1 \
         FROM s WHERE release_rules.id = s.id",
        crate::db::values_cte(
            "s",
            &["id", "consecutive", "armed", "last_fired_at"],
            states.len(),
            postgres,
            1
        ),
    );
    let rows = states.iter().map(|(id, s)| {
        (
            *id,
            s.consecutive,
            s.armed,
            s.last_fired_at.map(types::to_db),
        )
    });
    crate::per_backend!(conn, |c| {
        let mut q = diesel::sql_query(&sql).into_boxed();
        for (id, consecutive, armed, last) in rows {
            q = q
                .bind::<BigInt, _>(id)
                .bind::<Integer, _>(consecutive)
                .bind::<Bool, _>(armed)
                .bind::<Nullable<Timestamp>, _>(last);
        }
        q.execute(c)?
    });
    Ok(())
}

/// Why a rule did not fire, in words.
fn explain(
    rule: &RuleRow,
    reason: Reason,
    m: Option<&Measurement>,
    horizon: Option<NaiveDate>,
    open: Option<i64>,
    state: &State,
) -> String {
    let measured = m.map(|m| describe(rule, m)).unwrap_or_default();
    match reason {
        Reason::Disabled => "the rule is disabled".into(),
        Reason::NoData => match horizon {
            None => format!("no import flows of {} are on record", rule.element),
            Some(h) => format!(
                "no imports of {} fall in the {}-day baseline before the window ending {h}: nothing to compare with",
                rule.element, rule.baseline_days
            ),
        },
        Reason::BelowThreshold => format!("below threshold: {measured}"),
        Reason::NotEnoughConsecutiveBreaches => format!(
            "breach {} of the {} in a row needed: {measured}",
            state.consecutive, rule.consecutive_breaches
        ),
        Reason::Cooldown => format!(
            "cooling down: fired at {}, re-arms when the drop falls below the threshold or {} days have passed; {measured}",
            state
                .last_fired_at
                .map(types::rfc3339)
                .unwrap_or_default(),
            rule.cooldown_days
        ),
        Reason::OpenOrderExists => format!(
            "release order {} proposed by this rule is still open; {measured}",
            open.unwrap_or_default()
        ),
        Reason::Fired | Reason::FloorLeavesNothing | Reason::OrderRefused => measured,
    }
}

/// Evaluates every enabled rule of `elements` (after an ingest touched
/// them); the first failure fails the ingest.
pub fn evaluate_elements(
    conn: &mut DbConn,
    elements: &[String],
    triggered_by: &str,
) -> ApiResult<Vec<EvaluationView>> {
    let ids: Vec<i64> = rr::table
        .filter(rr::element.eq_any(elements))
        .filter(rr::enabled.eq(true))
        .filter(rr::deleted_at.is_null())
        .order(rr::id.asc())
        .select(rr::id)
        .load(conn)?;
    evaluate_all(conn, &ids, Trigger::Ingest, triggered_by, Isolation::None)?
        .into_iter()
        .map(|(_, view)| view)
        .collect()
}

/// The scheduled job: evaluates every enabled rule for `slot`. One rule's
/// failure rolls back only its own savepoint and is logged; the others run.
pub fn evaluate_scheduled(conn: &mut DbConn, slot: DateTime<Utc>) -> ApiResult<String> {
    let ids: Vec<i64> = rr::table
        .filter(rr::enabled.eq(true))
        .filter(rr::deleted_at.is_null())
        .order(rr::id.asc())
        .select(rr::id)
        .load(conn)?;
    let results = evaluate_all(
        conn,
        &ids,
        Trigger::Schedule(slot),
        "scheduler",
        Isolation::Savepoint,
    )?;
    // A rule deleted since the ids were read is not evaluated: a failure.
    let (mut fired, mut failed) = (0, ids.len() - results.len());
    for (id, result) in results {
        match result {
            Ok(e) if e.decision == "fired" => fired += 1,
            Ok(_) => {}
            Err(e) => {
                failed += 1;
                tracing::warn!(rule = id, error = %e, "scheduled rule evaluation failed");
            }
        }
    }
    Ok(format!(
        "evaluated {} rules: {fired} fired, {failed} failed",
        ids.len()
    ))
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ev)]
struct EvaluationRow {
    id: i64,
    rule_id: i64,
    rule_version: i64,
    at: NaiveDateTime,
    trigger: String,
    slot: Option<NaiveDateTime>,
    triggered_by: String,
    data_horizon: Option<NaiveDate>,
    window_start: Option<NaiveDate>,
    window_end: Option<NaiveDate>,
    baseline_start: Option<NaiveDate>,
    baseline_end: Option<NaiveDate>,
    window_kg_per_day: Option<String>,
    baseline_kg_per_day: Option<String>,
    drop_percent: Option<String>,
    breach: bool,
    consecutive: i32,
    decision: String,
    reason: String,
    detail: String,
    sizing: Option<String>,
    proposed_g: Option<i64>,
    order_id: Option<i64>,
}

fn evaluation_view(r: EvaluationRow) -> EvaluationView {
    let ts = |t: NaiveDateTime| types::rfc3339(types::from_db(t));
    EvaluationView {
        id: r.id,
        rule_id: r.rule_id,
        rule_version: r.rule_version,
        at: ts(r.at),
        trigger: r.trigger,
        slot: r.slot.map(ts),
        triggered_by: r.triggered_by,
        data_horizon: r.data_horizon,
        window_start: r.window_start,
        window_end: r.window_end,
        baseline_start: r.baseline_start,
        baseline_end: r.baseline_end,
        window_kg_per_day: r.window_kg_per_day,
        baseline_kg_per_day: r.baseline_kg_per_day,
        drop_percent: r.drop_percent,
        breach: r.breach,
        consecutive: r.consecutive,
        decision: r.decision,
        reason: r.reason,
        detail: r.detail,
        sizing: r.sizing.and_then(|s| serde_json::from_str(&s).ok()),
        proposed_kg: r.proposed_g.map(|g| Grams(g).to_kg_string()),
        order_id: r.order_id,
    }
}

/// A rule's evaluations, newest first unless asked.
pub fn evaluations(
    conn: &mut DbConn,
    rule_id: i64,
    page: &PageRequest,
) -> ApiResult<Vec<EvaluationView>> {
    let exists: i64 = rr::table
        .filter(rr::id.eq(rule_id))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        return Err(not_found(rule_id));
    }
    let q = ev::table
        .filter(ev::rule_id.eq(rule_id))
        .select(EvaluationRow::as_select())
        .into_boxed();
    let q = match (page.order, page.after) {
        (Order::NewestFirst, Some(c)) => q.filter(ev::id.lt(c)).order(ev::id.desc()),
        (Order::NewestFirst, None) => q.order(ev::id.desc()),
        (Order::OldestFirst, Some(c)) => q.filter(ev::id.gt(c)).order(ev::id.asc()),
        (Order::OldestFirst, None) => q.order(ev::id.asc()),
    };
    let rows: Vec<EvaluationRow> = q.limit(page.limit + 1).load(conn)?;
    Ok(rows.into_iter().map(evaluation_view).collect())
}
