//! Release-order decisions, free of HTTP and SQL so each can be checked by
//! hand: how an order is spread over depots, what an exchange owes, how a
//! sale is awarded, and which fiscal year a day belongs to.
//!
//! Quantities are grams, prices micro-units, as everywhere in the ledger.

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

/// What one depot can contribute to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepotSupply {
    pub depot: String,
    /// Stock of the order's element, form and grade not held by other orders.
    pub available_g: i64,
    /// The depot's `max_drawdown_g_per_day`.
    pub rate_g_per_day: i64,
}

/// One depot's share of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub depot: String,
    pub quantity_g: i64,
    /// The last day this depot ships, shipping its full rate from `start`.
    pub deliver_by: NaiveDate,
}

/// A plan that delivers the whole order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub allocations: Vec<Allocation>,
    pub expected_completion: NaiveDate,
}

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationError {
    /// The depots hold less than the order, at any pace.
    Insufficient { available_g: i64, requested_g: i64 },
}

/// Spreads `quantity_g` over depots so that the whole order completes soonest.
///
/// Day 1 is `start`, and a depot ships up to its rate each day. The order can
/// complete within `T` days exactly when the depots together can ship
/// `Σ min(available, rate × T)` ≥ quantity; the plan uses the smallest such
/// `T`. Within it, the fastest depots are filled first (ties by code), each up
/// to `min(available, rate × T)`, so as few depots as possible are involved.
/// Depots that cannot ship (rate or stock zero) get nothing.
pub fn allocate(
    quantity_g: i64,
    supplies: &[DepotSupply],
    start: NaiveDate,
) -> Result<Plan, AllocationError> {
    let usable: Vec<&DepotSupply> = supplies
        .iter()
        .filter(|s| s.available_g > 0 && s.rate_g_per_day > 0)
        .collect();
    let total: i128 = usable.iter().map(|s| s.available_g as i128).sum();
    if quantity_g <= 0 || total < quantity_g as i128 {
        return Err(AllocationError::Insufficient {
            available_g: total.min(i64::MAX as i128) as i64,
            requested_g: quantity_g,
        });
    }
    let can_ship = |days: i64| -> i128 {
        usable
            .iter()
            .map(|s| (s.available_g as i128).min(s.rate_g_per_day as i128 * days as i128))
            .sum()
    };
    // Smallest T with can_ship(T) >= quantity: binary search; T is at most the
    // slowest depot's time to empty itself.
    let (mut lo, mut hi) = (1i64, 1i64);
    while can_ship(hi) < quantity_g as i128 {
        hi *= 2;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if can_ship(mid) >= quantity_g as i128 {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let days = lo;
    let mut order = usable.clone();
    order.sort_by(|a, b| {
        b.rate_g_per_day
            .cmp(&a.rate_g_per_day)
            .then_with(|| a.depot.cmp(&b.depot))
    });
    let mut left = quantity_g;
    let mut allocations = Vec::new();
    for s in order {
        if left == 0 {
            break;
        }
        let cap = (s.available_g as i128).min(s.rate_g_per_day as i128 * days as i128) as i64;
        let take = cap.min(left);
        if take == 0 {
            continue;
        }
        left -= take;
        let ship_days = (take + s.rate_g_per_day - 1) / s.rate_g_per_day;
        allocations.push(Allocation {
            depot: s.depot.clone(),
            quantity_g: take,
            deliver_by: start + Duration::days(ship_days - 1),
        });
    }
    let expected_completion = allocations
        .iter()
        .map(|a| a.deliver_by)
        .max()
        .unwrap_or(start);
    Ok(Plan {
        allocations,
        expected_completion,
    })
}

/// What an exchange (a loan) owes back on `on`: the quantity plus its premium,
/// plus the late premium for every day after `return_due`, rounded *up* to the
/// gram (the reserve never loses a fraction of a gram to rounding).
pub fn owed_g(
    quantity_g: i64,
    premium_percent: Decimal,
    late_premium_percent_per_day: Option<Decimal>,
    return_due: NaiveDate,
    on: NaiveDate,
) -> i64 {
    let days_late = (on - return_due).num_days().max(0);
    let late = late_premium_percent_per_day.unwrap_or(Decimal::ZERO) * Decimal::from(days_late);
    let premium = Decimal::from(quantity_g) * (premium_percent + late) / Decimal::from(100);
    quantity_g + premium.ceil().to_i64().unwrap_or(i64::MAX - quantity_g)
}

/// An exchange is overdue from the day after `return_due` while anything is owed.
pub fn is_overdue(return_due: NaiveDate, on: NaiveDate, owed_g: i64, returned_g: i64) -> bool {
    on > return_due && returned_g < owed_g
}

/// A sealed bid on a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bid {
    pub id: i64,
    pub buyer: String,
    pub quantity_g: i64,
    pub price_micros: i64,
    /// When the bid was received, in microseconds; earlier wins a price tie.
    pub placed_at_micros: i64,
}

/// One buyer's fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Award {
    pub bid_id: i64,
    pub buyer: String,
    pub quantity_g: i64,
    pub price_micros: i64,
}

/// Fills `quantity_g` from the highest prices down; equal prices go to the
/// earlier bid (then the lower id). The last winner may be filled in part.
/// Deterministic: the same bids always give the same awards.
pub fn award(quantity_g: i64, bids: &[Bid]) -> Vec<Award> {
    let mut ranked: Vec<&Bid> = bids.iter().filter(|b| b.quantity_g > 0).collect();
    ranked.sort_by(|a, b| {
        b.price_micros
            .cmp(&a.price_micros)
            .then_with(|| a.placed_at_micros.cmp(&b.placed_at_micros))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut left = quantity_g.max(0);
    let mut awards = Vec::new();
    for b in ranked {
        if left == 0 {
            break;
        }
        let take = b.quantity_g.min(left);
        left -= take;
        awards.push(Award {
            bid_id: b.id,
            buyer: b.buyer.clone(),
            quantity_g: take,
            price_micros: b.price_micros,
        });
    }
    awards
}

/// The fiscal year `day` belongs to, named by the calendar year it ends in.
/// With `start_month` 10 (the US federal year), 2026-10-01 is in FY2027.
pub fn fiscal_year(day: NaiveDate, start_month: u32) -> i32 {
    if start_month > 1 && day.month() >= start_month {
        day.year() + 1
    } else {
        day.year()
    }
}

/// The first and last day of fiscal year `fy`.
pub fn fiscal_year_bounds(fy: i32, start_month: u32) -> Option<(NaiveDate, NaiveDate)> {
    let first_year = if start_month > 1 { fy - 1 } else { fy };
    let first = NaiveDate::from_ymd_opt(first_year, start_month, 1)?;
    let next = NaiveDate::from_ymd_opt(first_year + 1, start_month, 1)?;
    Some((first, next - Duration::days(1)))
}

/// The SPR's kinds of release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKind {
    EmergencyDrawdown,
    LimitedDrawdown,
    TestSale,
    MandatedSale,
    Exchange,
}

impl OrderKind {
    pub const ALL: [OrderKind; 5] = [
        OrderKind::EmergencyDrawdown,
        OrderKind::LimitedDrawdown,
        OrderKind::TestSale,
        OrderKind::MandatedSale,
        OrderKind::Exchange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::EmergencyDrawdown => "emergency_drawdown",
            OrderKind::LimitedDrawdown => "limited_drawdown",
            OrderKind::TestSale => "test_sale",
            OrderKind::MandatedSale => "mandated_sale",
            OrderKind::Exchange => "exchange",
        }
    }

    pub fn parse(s: &str) -> Result<OrderKind, String> {
        OrderKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                "must be one of emergency_drawdown, limited_drawdown, test_sale, mandated_sale, exchange".into()
            })
    }
}

/// How an order's material leaves: to a named counterparty, sold to the
/// highest bids, or lent (exchanges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Direct,
    Sale,
    Loan,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Direct => "direct",
            Method::Sale => "sale",
            Method::Loan => "loan",
        }
    }

    pub fn from_stored(s: &str) -> Method {
        match s {
            "direct" => Method::Direct,
            "loan" => Method::Loan,
            _ => Method::Sale,
        }
    }
}

/// Lifecycle: proposed → approved (→ offered → awarded, for sales) →
/// executing → completed (→ returned, for exchanges); or rejected / cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Proposed,
    Approved,
    Offered,
    Awarded,
    Executing,
    Completed,
    Returned,
    Rejected,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Proposed,
        Status::Approved,
        Status::Offered,
        Status::Awarded,
        Status::Executing,
        Status::Completed,
        Status::Returned,
        Status::Rejected,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Proposed => "proposed",
            Status::Approved => "approved",
            Status::Offered => "offered",
            Status::Awarded => "awarded",
            Status::Executing => "executing",
            Status::Completed => "completed",
            Status::Returned => "returned",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<Status, String> {
        Status::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                "must be one of proposed, approved, offered, awarded, executing, completed, returned, rejected, cancelled".into()
            })
    }

    /// States from which an order may still be cancelled (whatever is still
    /// reserved is then voided).
    pub const CANCELLABLE: [Status; 5] = [
        Status::Proposed,
        Status::Approved,
        Status::Offered,
        Status::Awarded,
        Status::Executing,
    ];
}

/// The statuses an execution may start from: a direct drawdown or an exchange
/// once approved, a sale once awarded.
pub fn executable_from(method: Method) -> &'static [Status] {
    match method {
        Method::Sale => &[Status::Awarded, Status::Executing],
        Method::Direct | Method::Loan => &[Status::Approved, Status::Executing],
    }
}

/// A policy limit an order breaks at proposal or approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyBreach {
    LimitedDrawdownQuantity { max_g: i64 },
    LimitedDrawdownDuration { max_days: i32, plan_days: i64 },
    TestSaleQuantity { max_g: i64 },
}

/// The element policy's caps on an order: a limited drawdown may move at
/// most `limited_drawdown_max_g` and must complete within
/// `limited_drawdown_max_days` (day 1 being the start); a test sale at most
/// `test_sale_max_g`.
pub fn check_policy(
    kind: OrderKind,
    quantity_g: i64,
    plan_days: i64,
    limited_max_g: Option<i64>,
    limited_max_days: Option<i32>,
    test_sale_max_g: Option<i64>,
) -> Result<(), PolicyBreach> {
    match kind {
        OrderKind::LimitedDrawdown => {
            if let Some(max_g) = limited_max_g.filter(|m| quantity_g > *m) {
                return Err(PolicyBreach::LimitedDrawdownQuantity { max_g });
            }
            if let Some(max_days) = limited_max_days.filter(|d| plan_days > i64::from(*d)) {
                return Err(PolicyBreach::LimitedDrawdownDuration {
                    max_days,
                    plan_days,
                });
            }
            Ok(())
        }
        OrderKind::TestSale => match test_sale_max_g.filter(|m| quantity_g > *m) {
            Some(max_g) => Err(PolicyBreach::TestSaleQuantity { max_g }),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn supply(depot: &str, available_kg: i64, rate_kg: i64) -> DepotSupply {
        DepotSupply {
            depot: depot.into(),
            available_g: available_kg * 1000,
            rate_g_per_day: rate_kg * 1000,
        }
    }

    /// By hand: 1,000 kg from A (600 kg, 100 kg/day), B (300 kg, 200 kg/day)
    /// and C (500 kg, 50 kg/day). In 4 days they can ship 400 + 300 + 200 =
    /// 900 kg, in 5 days 500 + 300 + 250 = 1,050 kg, so T = 5. Fastest first:
    /// B gives 300 kg (2 days), A 500 kg (5 days), C the remaining 200 kg
    /// (4 days). Starting 1 March, the order completes on 5 March.
    #[test]
    fn three_depots_match_the_hand_computed_plan() {
        let plan = allocate(
            1_000_000,
            &[
                supply("A", 600, 100),
                supply("B", 300, 200),
                supply("C", 500, 50),
            ],
            d("2027-03-01"),
        )
        .unwrap();
        let got: Vec<(&str, i64, NaiveDate)> = plan
            .allocations
            .iter()
            .map(|a| (a.depot.as_str(), a.quantity_g, a.deliver_by))
            .collect();
        assert_eq!(
            got,
            vec![
                ("B", 300_000, d("2027-03-02")),
                ("A", 500_000, d("2027-03-05")),
                ("C", 200_000, d("2027-03-04")),
            ]
        );
        assert_eq!(plan.expected_completion, d("2027-03-05"));
    }

    #[test]
    fn not_enough_stock_is_refused_with_the_numbers() {
        assert_eq!(
            allocate(
                10_000,
                &[supply("A", 5, 1), supply("B", 4, 0)],
                d("2027-01-01")
            ),
            Err(AllocationError::Insufficient {
                available_g: 5_000,
                requested_g: 10_000
            })
        );
    }

    #[test]
    fn a_single_small_order_ships_in_a_day() {
        let plan = allocate(1, &[supply("A", 5, 1)], d("2027-01-01")).unwrap();
        assert_eq!(plan.expected_completion, d("2027-01-01"));
    }

    /// 100 kg at 5% owes 105.000 kg; overdue from the day after the due
    /// date, when the late premium starts to accrue per day.
    #[test]
    fn an_exchange_owes_its_premium_and_accrues_lateness() {
        let due = d("2027-06-30");
        let owed = |on: &str| {
            owed_g(
                100_000,
                Decimal::new(5, 0),
                Some(Decimal::new(1, 1)),
                due,
                d(on),
            )
        };
        assert_eq!(owed("2027-06-30"), 105_000);
        assert!(!is_overdue(due, due, 105_000, 0));
        assert!(is_overdue(due, d("2027-07-01"), 105_000, 0));
        assert_eq!(owed("2027-07-01"), 105_100);
        assert_eq!(owed("2027-07-10"), 106_000);
        assert!(!is_overdue(due, d("2027-07-01"), 105_100, 105_100));
    }

    #[test]
    fn owed_rounds_up_to_the_gram() {
        // 1 g at 5% owes 1.05 g: 2 g.
        assert_eq!(
            owed_g(
                1,
                Decimal::new(5, 0),
                None,
                d("2027-01-01"),
                d("2026-01-01")
            ),
            2
        );
        assert_eq!(
            owed_g(
                333,
                Decimal::new(1, 0),
                None,
                d("2027-01-01"),
                d("2026-01-01")
            ),
            337
        );
    }

    /// Three bidders for 1,000 kg: C bids the highest price, A and B tie and
    /// A bid first; B's bid is filled in part.
    #[test]
    fn awards_go_by_price_then_time_with_a_partial_last_fill() {
        let bid = |id, buyer: &str, kg: i64, price: i64, at| Bid {
            id,
            buyer: buyer.into(),
            quantity_g: kg * 1000,
            price_micros: price * 1_000_000,
            placed_at_micros: at,
        };
        let bids = vec![
            bid(1, "B", 500, 90, 20),
            bid(2, "A", 400, 90, 10),
            bid(3, "C", 300, 95, 30),
            bid(4, "D", 900, 80, 5),
        ];
        let awards = award(1_000_000, &bids);
        let got: Vec<(&str, i64)> = awards
            .iter()
            .map(|a| (a.buyer.as_str(), a.quantity_g))
            .collect();
        assert_eq!(got, vec![("C", 300_000), ("A", 400_000), ("B", 300_000)]);
        let mut shuffled = bids.clone();
        shuffled.reverse();
        assert_eq!(
            award(1_000_000, &shuffled),
            awards,
            "the order of storage does not matter"
        );
    }

    #[test]
    fn policy_caps_limited_drawdowns_and_test_sales() {
        use OrderKind::*;
        assert_eq!(
            check_policy(LimitedDrawdown, 10, 5, Some(10), Some(5), None),
            Ok(())
        );
        assert_eq!(
            check_policy(LimitedDrawdown, 11, 5, Some(10), Some(5), None),
            Err(PolicyBreach::LimitedDrawdownQuantity { max_g: 10 })
        );
        assert_eq!(
            check_policy(LimitedDrawdown, 10, 6, Some(10), Some(5), None),
            Err(PolicyBreach::LimitedDrawdownDuration {
                max_days: 5,
                plan_days: 6
            })
        );
        assert_eq!(
            check_policy(TestSale, 11, 1, None, None, Some(10)),
            Err(PolicyBreach::TestSaleQuantity { max_g: 10 })
        );
        assert_eq!(
            check_policy(EmergencyDrawdown, i64::MAX, 999, Some(1), Some(1), Some(1)),
            Ok(())
        );
        assert_eq!(
            check_policy(LimitedDrawdown, 1_000, 99, None, None, None),
            Ok(())
        );
    }

    #[test]
    fn fiscal_years_end_in_the_year_they_are_named_for() {
        assert_eq!(fiscal_year(d("2026-09-30"), 10), 2026);
        assert_eq!(fiscal_year(d("2026-10-01"), 10), 2027);
        assert_eq!(fiscal_year(d("2026-12-31"), 1), 2026);
        assert_eq!(
            fiscal_year_bounds(2027, 10),
            Some((d("2026-10-01"), d("2027-09-30")))
        );
        assert_eq!(
            fiscal_year_bounds(2026, 1),
            Some((d("2026-01-01"), d("2026-12-31")))
        );
    }

    proptest! {
        /// Any plan delivers exactly the order, within every depot's stock,
        /// and no plan with one day fewer could (the completion is soonest).
        #[test]
        fn plans_are_exact_feasible_and_soonest(
            q in 1i64..5_000_000,
            depots in proptest::collection::vec((0i64..3_000_000, 0i64..500_000), 1..6),
        ) {
            let supplies: Vec<DepotSupply> = depots.iter().enumerate()
                .map(|(i, (a, r))| DepotSupply { depot: format!("D{i}"), available_g: *a, rate_g_per_day: *r })
                .collect();
            let start = d("2027-01-01");
            match allocate(q, &supplies, start) {
                Err(AllocationError::Insufficient { available_g, .. }) => {
                    let usable: i64 = supplies.iter().filter(|s| s.rate_g_per_day > 0).map(|s| s.available_g).sum();
                    prop_assert_eq!(available_g, usable);
                    prop_assert!(usable < q);
                }
                Ok(plan) => {
                    prop_assert_eq!(plan.allocations.iter().map(|a| a.quantity_g).sum::<i64>(), q);
                    let days = (plan.expected_completion - start).num_days() + 1;
                    for a in &plan.allocations {
                        let s = supplies.iter().find(|s| s.depot == a.depot).unwrap();
                        prop_assert!(a.quantity_g <= s.available_g);
                        prop_assert!(a.quantity_g <= s.rate_g_per_day * days);
                    }
                    if days > 1 {
                        let faster: i64 = supplies.iter()
                            .map(|s| s.available_g.min(s.rate_g_per_day * (days - 1)))
                            .sum();
                        prop_assert!(faster < q, "{} days would have done", days - 1);
                    }
                }
            }
        }
    }
}
