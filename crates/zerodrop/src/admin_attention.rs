//! `zerodrop admin attention list|show|resolve`: the attention queue for a person at the
//! server. Resolving goes through the same flow as the API's, so the action is logged and
//! on the order's timeline; resolving an item again with the same action is a no-op
//! that shows the item (the item is its own idempotency key).

use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;
use zerodrop_server::flows::attention::{resolve_in, Action, Resolution};
use zerodrop_server::http::attention::item_json;
use zerodrop_server::App;
use zerodrop_store::attention::{self, Filter};
use zerodrop_store::now_ms;

/// Items listed at most.
const LIST_ITEMS_MAX: i64 = 500;

#[derive(Subcommand)]
pub enum AttentionCommand {
    /// List items, oldest first, with their clocks.
    List {
        /// Include resolved items.
        #[arg(long)]
        all: bool,
        /// Only items with this reason.
        #[arg(long)]
        reason: Option<String>,
        /// Only open items past their due time.
        #[arg(long)]
        overdue: bool,
        /// Print JSON instead of one line per item.
        #[arg(long)]
        json: bool,
    },
    /// Show one item in full (JSON).
    Show { id: i64 },
    /// End an item with a recorded action.
    Resolve {
        id: i64,
        /// deliver_by_hand, refund, compensate or dismiss.
        #[arg(long)]
        action: String,
        /// A stable code for why (letters, digits, '_', '-', '.').
        #[arg(long)]
        reason_code: String,
        #[arg(long)]
        note: String,
        /// Who is acting.
        #[arg(long)]
        actor: String,
        /// What was delivered (deliver_by_hand).
        #[arg(long)]
        delivered: Option<String>,
        /// A decimal to refund (refund; everything left when absent).
        #[arg(long)]
        amount: Option<String>,
    },
}

pub async fn run(app: &App, command: &AttentionCommand) -> Result<ExitCode> {
    let now = now_ms();
    match command {
        AttentionCommand::List { all, reason, overdue, json } => {
            let filter = Filter {
                open: (!all).then_some(true),
                reason: reason.clone(),
                overdue_at_ms: overdue.then_some(now),
                ..Filter::default()
            };
            let mut conn = app.store.reader().await?;
            let items = attention::list(&mut conn, &filter, 0, LIST_ITEMS_MAX).await?;
            if *json {
                let items: Vec<_> = items.iter().map(|i| item_json(i, now)).collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(ExitCode::SUCCESS);
            }
            for item in &items {
                let clock = if !item.is_open() {
                    "resolved".to_owned()
                } else if item.is_overdue(now) {
                    format!("OVERDUE by {} min", (now - item.due_at_ms) / 60_000)
                } else {
                    format!("due in {} min", (item.due_at_ms - now) / 60_000)
                };
                println!(
                    "{:>6}  {:<28} at stake {:>10} {:<3}  order {:<36}  {}",
                    item.id,
                    item.reason,
                    item.at_stake_minor,
                    item.currency.as_deref().unwrap_or(""),
                    item.order_id.as_deref().unwrap_or("-"),
                    clock
                );
            }
            println!("{} item(s)", items.len());
            Ok(ExitCode::SUCCESS)
        }
        AttentionCommand::Show { id } => {
            let mut conn = app.store.reader().await?;
            match attention::get(&mut conn, *id).await? {
                Some(item) => {
                    println!("{}", serde_json::to_string_pretty(&item_json(&item, now))?);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("error: no attention item {id}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AttentionCommand::Resolve { id, action, reason_code, note, actor, delivered, amount } => {
            let resolved = async {
                let action = Action::from_parts(action, delivered.clone(), amount.clone())?;
                let how = Resolution {
                    action,
                    reason_code: reason_code.clone(),
                    note: note.clone(),
                    actor: actor.clone(),
                    channel: "cli",
                };
                let mut tx = app.store.begin().await?;
                let item = resolve_in(&mut tx, *id, &how, now).await?;
                tx.commit().await?;
                Ok::<_, zerodrop_server::flows::attention::ResolveError>(item)
            }
            .await;
            match resolved {
                Ok(item) => {
                    println!("{}", serde_json::to_string_pretty(&item_json(&item, now))?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
