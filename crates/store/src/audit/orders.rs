//! The per-order pass: orders are read a page at a time with everything that follows from
//! them ([`super::facts`]), and each order is held to its events, its product, its refunds
//! and what keeps it moving.

use super::facts;
use super::goods::Goods;
use super::pending::Pending;
use super::refunds::Refunds;
use super::timeline::Timeline;
use super::Check;
use crate::{Conn, Result};

/// Runs every per-order check; `cause` is the shared `transfer_has_cause` check, which
/// the ledger's own pass adds to.
pub(super) async fn checks(c: &mut Conn, cause: &mut Check) -> Result<Vec<Check>> {
    let mut timeline = Timeline::new();
    let mut goods = Goods::new();
    let mut refunds = Refunds::new();
    let mut pending = Pending::new();
    let mut after = String::new();
    loop {
        let page = facts::page(c, &after).await?;
        let Some(last) = page.last().map(|o| o.id.clone()) else { break };
        for o in &page {
            timeline.check(o);
            goods.check(o, cause);
            refunds.check(o);
            pending.check(o);
        }
        after = last;
    }
    let mut checks = timeline.into_checks();
    checks.extend(goods.into_checks());
    checks.extend(refunds.into_checks());
    checks.extend(pending.into_checks());
    Ok(checks)
}
