//! zerodrop's black-box tests, one binary (it links once): each module drives the real
//! server over loopback HTTP with the sandbox provider, on SQLite and on PostgreSQL
//! (`both_engines!`; PostgreSQL when `ZERODROP_TEST_PG` is set).

mod agreements;
mod api;
mod card_keys;
mod charges;
mod errors;
mod external_delivery;
mod finding;
mod jobs;
mod notify_flood;
mod notify_intake;
mod outage;
mod processes;
mod proof;
mod reconcile;
mod refunds;
mod refunds_never_double;
mod refunds_refused;
mod renewals;
mod scenarios;
mod seal;
mod secrets;
mod status_pages;
mod support;
mod tamper;
mod termination;
