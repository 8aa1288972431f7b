//! Every route the service answers, in one table. The same table drives the
//! actix configuration and the OpenAPI drift test, so neither can forget one.

use actix_web::{web, HttpResponse, ResponseError};

use crate::error::ApiError;
use crate::{
    audit, dashboard, depots, docs, elements, events, flows, health, ledger, metrics, orders,
    periods, policy, rules, stockpiles, summary, webhooks,
};

fn method_not_allowed(allow: &str) -> HttpResponse {
    let mut response =
        ApiError::MethodNotAllowed(format!("this resource answers {allow}")).error_response();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, v);
    }
    response
}

macro_rules! route_table {
    ($( $method:ident $path:literal => $handler:path ),* $(,)?) => {
        /// `(method, path)` of every route, paths in OpenAPI/actix `{param}` form.
        pub const ROUTES: &[(&str, &str)] = &[ $( (stringify!($method), $path) ),* ];

        /// Registers every route on `cfg`, then, per path, a 405 (with `Allow`)
        /// for the methods that path does not serve.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, web::$method().to($handler)); )*
            let mut paths: Vec<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
            paths.sort_unstable();
            paths.dedup();
            for path in paths {
                let allow = ROUTES
                    .iter()
                    .filter(|(_, p)| *p == path)
                    .map(|(m, _)| m.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(", ");
                cfg.route(path, web::route().to(move || {
                    let allow = allow.clone();
                    async move { method_not_allowed(&allow) }
                }));
            }
        }
    };
}

route_table! {
    get "/healthz" => health::healthz,
    get "/readyz" => health::readyz,
    get "/metrics" => metrics::routes::get,

    get "/" => dashboard::routes::page,
    get "/dashboard/{asset}" => dashboard::routes::asset,

    get "/openapi.yaml" => docs::routes::openapi_yaml,
    get "/docs" => docs::routes::page,
    get "/docs/{asset}" => docs::routes::asset,

    get "/api/v1/elements" => elements::routes::list,
    get "/api/v1/elements/{symbol}" => elements::routes::get,
    get "/api/v1/elements/{symbol}/policy" => policy::routes::get_policy,
    put "/api/v1/elements/{symbol}/policy" => policy::routes::put_policy,

    post "/api/v1/depots" => depots::routes::create,
    get "/api/v1/depots" => depots::routes::list,
    get "/api/v1/depots/{code}" => depots::routes::get,
    patch "/api/v1/depots/{code}" => depots::routes::update,
    post "/api/v1/depots/{code}/suspend" => depots::routes::suspend,
    post "/api/v1/depots/{code}/activate" => depots::routes::activate,
    post "/api/v1/depots/{code}/close" => depots::routes::close,

    get "/api/v1/events" => events::routes::stream,
    post "/api/v1/events/tickets" => events::routes::ticket,

    get "/api/v1/stockpiles" => stockpiles::routes::list,
    post "/api/v1/stockpiles" => stockpiles::routes::create,
    get "/api/v1/stockpiles/{id}" => stockpiles::routes::get,
    get "/api/v1/stockpiles/{id}/balance" => stockpiles::routes::balance,

    post "/api/v1/acquisitions" => ledger::routes::acquire,
    post "/api/v1/releases" => ledger::routes::release,
    post "/api/v1/transfers" => ledger::routes::transfer,
    post "/api/v1/ledger/batch" => ledger::routes::batch,
    get "/api/v1/ledger" => ledger::routes::list,
    get "/api/v1/ledger/verify" => ledger::routes::verify,
    post "/api/v1/ledger/checkpoints" => audit::routes::create_checkpoint,
    get "/api/v1/ledger/checkpoints" => audit::routes::list_checkpoints,
    get "/api/v1/ledger/checkpoints/{id}/proof" => audit::routes::checkpoint_proof,

    get "/api/v1/summary" => summary::routes::get,

    post "/api/v1/import-flows" => flows::routes::create,
    get "/api/v1/import-flows" => flows::routes::list,
    get "/api/v1/cover" => flows::routes::get_cover,

    post "/api/v1/period-locks" => periods::routes::create,
    get "/api/v1/period-locks" => periods::routes::list,

    post "/api/v1/release-orders" => orders::routes::create,
    get "/api/v1/release-orders" => orders::routes::list,
    get "/api/v1/release-orders/{id}" => orders::routes::get,
    post "/api/v1/release-orders/{id}/approve" => orders::routes::approve,
    post "/api/v1/release-orders/{id}/reject" => orders::routes::reject,
    post "/api/v1/release-orders/{id}/cancel" => orders::routes::cancel,
    post "/api/v1/release-orders/{id}/execute" => orders::routes::execute,
    post "/api/v1/release-orders/{id}/returns" => orders::routes::returns,
    post "/api/v1/release-orders/{id}/notice" => orders::routes::notice,
    post "/api/v1/release-orders/{id}/bids" => orders::routes::bid,
    get "/api/v1/release-orders/{id}/bids" => orders::routes::list_bids,
    post "/api/v1/release-orders/{id}/award" => orders::routes::award,
    post "/api/v1/buyers" => orders::routes::create_buyer,
    get "/api/v1/buyers" => orders::routes::list_buyers,

    post "/api/v1/release-rules" => rules::routes::create,
    get "/api/v1/release-rules" => rules::routes::list,
    get "/api/v1/release-rules/{id}" => rules::routes::get,
    put "/api/v1/release-rules/{id}" => rules::routes::replace,
    delete "/api/v1/release-rules/{id}" => rules::routes::delete,
    get "/api/v1/release-rules/{id}/history" => rules::routes::history,
    post "/api/v1/release-rules/{id}/evaluate" => rules::routes::evaluate,
    get "/api/v1/release-rules/{id}/evaluations" => rules::routes::evaluations,

    post "/api/v1/simulations" => rules::routes::simulate,

    post "/api/v1/webhooks" => webhooks::routes::create,
    get "/api/v1/webhooks" => webhooks::routes::list,
    get "/api/v1/webhooks/{id}" => webhooks::routes::get,
    patch "/api/v1/webhooks/{id}" => webhooks::routes::update,
    delete "/api/v1/webhooks/{id}" => webhooks::routes::delete,
    get "/api/v1/webhooks/{id}/deliveries" => webhooks::routes::deliveries,
    get "/api/v1/webhooks/{id}/deliveries/{delivery_id}" => webhooks::routes::delivery,
    post "/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver" => webhooks::routes::redeliver,

    get "/api/v1/ceilings" => policy::routes::list_ceilings,
    get "/api/v1/ceilings/{element}/{fiscal_year}" => policy::routes::get_ceiling,
    put "/api/v1/ceilings/{element}/{fiscal_year}" => policy::routes::put_ceiling,

    post "/api/v1/counts" => audit::routes::create_count,
    get "/api/v1/counts" => audit::routes::list_counts,
    get "/api/v1/counts/{id}" => audit::routes::get_count,
    post "/api/v1/counts/{id}/accept" => audit::routes::accept_count,
    post "/api/v1/counts/{id}/reject" => audit::routes::reject_count,
    get "/api/v1/audit-trail" => audit::routes::list_trail,
    post "/api/v1/audit-reports" => audit::routes::create_report,
    get "/api/v1/audit-reports" => audit::routes::list_reports,
    get "/api/v1/audit-reports/public-key" => audit::routes::public_key,
    get "/api/v1/audit-reports/{id}" => audit::routes::get_report,
}
