//! The report as one self-contained HTML page (no script, no outside resource): the
//! totals, each class with its lines, and an SVG chart of the bill's day hour by hour
//! (payments by outcome as stacked bars, the bill's own count as a line, and the drop
//! rate so far), so a person can look instead of read. Every value is escaped (maud).

use super::{ClassNow, Report};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use zerodrop_providers::alipay::clock::format_cst;
use zerodrop_store::bills::HourFigures;

const STYLE: &str = "body{font-family:system-ui,'Noto Sans CJK SC','WenQuanYi Zen Hei',sans-serif;margin:1.5rem;\
color:#1d2330;max-width:72rem}table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #c9ced8;\
padding:.25rem .5rem;text-align:right}th{background:#eef1f6}td.l,th.l{text-align:left}.bad{color:#b3261e;font-weight:600}\
.ok{color:#1b6e3a;font-weight:600}.muted{color:#5b6476}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}\
.legend span{display:inline-block;margin-right:1rem}.sw{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}";

/// Chart geometry, in SVG user units (integers: the chart needs no fractions).
const CHART_W: i64 = 960;
const CHART_H: i64 = 260;
const PAD_L: i64 = 48;
const PAD_B: i64 = 28;
const PAD_T: i64 = 12;
const PAD_R: i64 = 56;

const DELIVERED: &str = "#2e8b57";
const REFUNDED: &str = "#3b6fd8";
const OPEN: &str = "#e0a526";
const DROPPED: &str = "#c62828";
const BILLED: &str = "#1d2330";
const DROP_LINE: &str = "#c62828";

pub fn render(report: &Report) -> String {
    let bill = &report.reconciliation.bill;
    let s = report.summary();
    let title = format!("对账 Reconciliation #{} · {}", report.reconciliation.id, bill.file_name);
    let differences = s.differences();
    let markup = html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                p.muted {
                    (bill.provider) " · 账号 account " (bill.account) " · "
                    (format_cst(bill.from_ms)) " — " (format_cst(bill.to_ms)) " (CST) · SHA-256 " (bill.file_sha256)
                }
                h2 { "总计 Totals" }
                table id="totals" {
                    tr { th.l { "" } th { "笔数 lines" } th { "账单金额 bill" } th { "zerodrop" } }
                    tr { td.l { "账单交易 bill trades" } td { (s.trade_lines.count) } td { (report.amount(s.trade_lines.bill_amount_minor)) } td { "" } }
                    tr { td.l { "账单退款 bill refunds" } td { (s.refund_lines.count) } td { (report.amount(s.refund_lines.bill_amount_minor)) } td { "" } }
                    tr { td.l.ok { "一致 matched" } td { (s.matched.count) } td { (report.amount(s.matched.bill_amount_minor)) } td { (report.amount(s.matched.amount_minor)) } }
                    tr { td.l.ok { "退款一致 refunds matched" } td { (s.refunds_matched.count) } td { (report.amount(s.refunds_matched.bill_amount_minor)) } td { (report.amount(s.refunds_matched.amount_minor)) } }
                    tr {
                        td.l class=(if differences > 0 { "bad" } else { "ok" }) { "差异 differences" }
                        td { (differences) } td { "" } td { "" }
                    }
                    tr { td.l { "已修复 repaired" } td id="repaired" { (report.repaired) } td { "" } td { "" } }
                    tr {
                        td.l { "掉单率 drop rate (ppm)" }
                        td id="drop-rate" class=(if report.drop_rate_ppm > 0 { "bad" } else { "ok" }) { (report.drop_rate_ppm) }
                        td { "" } td { "" }
                    }
                }
                h2 { "按类 By class" }
                (classes(report))
                h2 { "当日支付与结果 The day's payments and their outcomes" }
                (chart(&report.hours))
                h2 { "差异明细 Each difference" }
                (lines(report))
                p.muted { "生成于 generated " (format_cst(report.generated_at_ms)) " (CST)" }
            }
        }
    };
    markup.into_string()
}

fn class_label(class: &str) -> &'static str {
    match class {
        "unknown_to_us" => "渠道有、我方无 paid at the provider, unknown to zerodrop",
        "missing_from_bill" => "我方有、账单无 known to zerodrop, missing from the bill",
        "amount_differs" => "金额不符 amount differs",
        "refund_unknown_to_us" => "账单退款、我方无 refund in the bill, not in zerodrop",
        "refund_missing_from_bill" => "我方退款、账单无 refund in zerodrop, not in the bill",
        "no_outcome" => "超时无结果 no outcome past the deadline",
        _ => "other",
    }
}

fn classes(report: &Report) -> Markup {
    let row = |c: &ClassNow| {
        html! {
            tr.class {
                td.l { (class_label(&c.class)) br; span.muted { (c.class) } }
                td class=(if c.count > 0 { "bad" } else { "" }) { (c.count) }
                td { (report.amount(c.bill_amount_minor)) }
                td { (report.amount(c.amount_minor)) }
                td { (c.repaired) } td { (c.attention) } td { (c.resolved) } td { (c.pending) }
            }
        }
    };
    html! {
        table id="classes" {
            tr {
                th.l { "类 class" } th { "笔数 lines" } th { "账单金额 bill" } th { "zerodrop" }
                th { "已修复 repaired" } th { "转人工 with a person" } th { "已消除 resolved" } th { "处理中 pending" }
            }
            @for c in &report.classes { (row(c)) }
        }
    }
}

fn lines(report: &Report) -> Markup {
    html! {
        @if report.lines.is_empty() && report.summary().differences() == 0 {
            p.ok { "无差异 No differences." }
        } @else if report.lines.is_empty() {
            p.muted {
                "本次无新差异：这些差异已由更早的对账记录并处理。 No new differences: each was recorded (and is repaired) \
                 by an earlier reconciliation of a bill naming the same facts."
            }
        } @else {
            table id="lines" {
                tr {
                    th.l { "类 class" } th.l { "状态 state" } th.l { "交易号 trade" } th.l { "订单 order" }
                    th { "账单行 line" } th { "账单金额 bill" } th { "zerodrop" } th.l { "处理 outcome" }
                }
                @for d in &report.lines {
                    tr {
                        td.l { (d.class.as_str()) }
                        td.l { (d.state.as_str()) }
                        td.l { (d.trade_no.as_deref().unwrap_or("")) @if let Some(r) = &d.refund_no { @if !r.is_empty() { br; span.muted { (r) } } } }
                        td.l { (d.order_no.as_deref().unwrap_or("")) }
                        td { @if let Some(n) = d.line_no { (n) } }
                        td { (report.amount(d.bill_amount_minor)) }
                        td { (report.amount(d.amount_minor)) }
                        td.l { (d.outcome.as_deref().unwrap_or("")) }
                    }
                }
            }
            @if report.lines_more { p.muted { "更多差异见 API: more through GET /v1/reconciliations/{id}?after=" } }
        }
    }
}

/// Stacked bars per hour (delivered, refunded, open, dropped), the bill's trade count per
/// hour as a line, and the drop rate so far (per million, right axis) as a red line.
fn chart(hours: &[HourFigures]) -> Markup {
    let n = i64::try_from(hours.len()).unwrap_or(1).max(1);
    let top = hours.iter().map(|h| h.charges.max(h.billed)).max().unwrap_or(0).max(1);
    let plot_w = CHART_W - PAD_L - PAD_R;
    let plot_h = CHART_H - PAD_T - PAD_B;
    let slot = plot_w / n;
    let bar = (slot * 7 / 10).max(1);
    let y = |v: i64| PAD_T + plot_h - v * plot_h / top;
    let x = |i: i64| PAD_L + i * slot + (slot - bar) / 2;
    let mut billed_points = String::new();
    let mut drop_points = String::new();
    let (mut charges_so_far, mut dropped_so_far) = (0_i64, 0_i64);
    let mut drop_rates = Vec::with_capacity(hours.len());
    for h in hours {
        charges_so_far += h.charges;
        dropped_so_far += h.dropped;
        drop_rates.push(super::per_million(dropped_so_far, charges_so_far));
    }
    let rate_top = drop_rates.iter().copied().max().unwrap_or(0).max(1);
    for (i, h) in hours.iter().enumerate() {
        let i = i as i64;
        let cx = x(i) + bar / 2;
        billed_points.push_str(&format!("{},{} ", cx, y(h.billed)));
        let rate = drop_rates[i as usize];
        drop_points.push_str(&format!("{},{} ", cx, PAD_T + plot_h - rate * plot_h / rate_top));
    }
    let segments = |h: &HourFigures| {
        let mut base = 0_i64;
        [(h.delivered, DELIVERED), (h.refunded, REFUNDED), (h.open, OPEN), (h.dropped, DROPPED)]
            .into_iter()
            .filter(|(v, _)| *v > 0)
            .map(|(v, color)| {
                let (y0, y1) = (y(base), y(base + v));
                base += v;
                (y1, (y0 - y1).max(1), color)
            })
            .collect::<Vec<_>>()
    };
    html! {
        p.legend {
            span { span.sw style=(format!("background:{DELIVERED}")) {} "已发货 delivered" }
            span { span.sw style=(format!("background:{REFUNDED}")) {} "已退款 refunded" }
            span { span.sw style=(format!("background:{OPEN}")) {} "处理中 open" }
            span { span.sw style=(format!("background:{DROPPED}")) {} "掉单 dropped" }
            span { span.sw style=(format!("background:{BILLED}")) {} "账单笔数 billed" }
            span { span.sw style=(format!("background:{DROP_LINE};height:.2rem")) {} "掉单率 drop rate (ppm, right axis)" }
        }
        svg id="chart" xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {CHART_W} {CHART_H}")) width="100%" role="img"
            aria-label="payments per hour by outcome" {
            line x1=(PAD_L) y1=(PAD_T + plot_h) x2=(PAD_L + plot_w) y2=(PAD_T + plot_h) stroke="#888" {}
            line x1=(PAD_L) y1=(PAD_T) x2=(PAD_L) y2=(PAD_T + plot_h) stroke="#888" {}
            text x=(PAD_L - 6) y=(PAD_T + 10) text-anchor="end" font-size="11" { (top) }
            text x=(PAD_L - 6) y=(PAD_T + plot_h) text-anchor="end" font-size="11" { "0" }
            text x=(PAD_L + plot_w + 6) y=(PAD_T + 10) font-size="11" fill=(DROP_LINE) { (rate_top) }
            @for (i, h) in hours.iter().enumerate() {
                @for (top_y, height, color) in segments(h) {
                    rect x=(x(i as i64)) y=(top_y) width=(bar) height=(height) fill=(color) {
                        title { (format_cst(h.from_ms)) ": " (h.charges) }
                    }
                }
                @if i % 3 == 0 {
                    text x=(x(i as i64)) y=(CHART_H - 8) font-size="11" {
                        (format_cst(h.from_ms).get(11..16).unwrap_or(""))
                    }
                }
            }
            polyline points=(billed_points.trim_end()) fill="none" stroke=(BILLED) stroke-width="2" stroke-dasharray="4 3" {}
            polyline points=(drop_points.trim_end()) fill="none" stroke=(DROP_LINE) stroke-width="2" {}
        }
    }
}
