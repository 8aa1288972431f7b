//! HTTP tests against the real app on a real database. Every database test runs
//! twice: on a fresh SQLite file and on a fresh PostgreSQL database.

mod helpers;

mod audit;
mod auth;
mod cli;
mod dashboard;
mod depots;
mod docs;
mod events;
mod flows;
mod group_commit;
mod hardening;
mod integrity;
mod ledger;
mod messages;
mod metrics;
mod openapi;
mod orders;
mod pagination;
mod policy;
mod posting_statements;
mod properties;
mod reads;
mod rules;
mod sse;
mod webhook_receiver;
mod webhooks;
