//! The report as CSV: one row per difference, then the class totals, so a spreadsheet
//! can take it as it is. Cells that could start a formula are quoted with a leading `'`.

use super::Report;
use std::fmt::Write;

const HEADER: &str = "difference_id,class,state,trade_no,order_no,refund_no,bill_line_no,bill_line_sha256,\
amount,bill_amount,charge_id,refund_id,order_id,outcome";

/// A cell: quoted when it holds a separator, a quote or a line break; prefixed with `'`
/// when a spreadsheet would read it as a formula.
fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(256 + report.lines.len() * 160);
    out.push_str(HEADER);
    out.push('\n');
    for d in &report.lines {
        let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            d.id,
            d.class.as_str(),
            d.state.as_str(),
            opt(&d.trade_no),
            opt(&d.order_no),
            opt(&d.refund_no),
            d.line_no.map(|n| n.to_string()).unwrap_or_default(),
            opt(&d.line_sha256),
            report.amount(d.amount_minor),
            report.amount(d.bill_amount_minor),
            d.charge_id.map(|n| n.to_string()).unwrap_or_default(),
            opt(&d.refund_id),
            opt(&d.order_id),
            opt(&d.outcome),
        );
    }
    out.push('\n');
    out.push_str("class,count,amount,bill_amount,pending,repaired,attention,resolved\n");
    let s = report.summary();
    for (name, f) in [("matched", s.matched), ("refunds_matched", s.refunds_matched)] {
        let _ = writeln!(
            out,
            "{name},{},{},{},0,0,0,0",
            f.count,
            report.amount(f.amount_minor),
            report.amount(f.bill_amount_minor)
        );
    }
    for c in &report.classes {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            c.class,
            c.count,
            report.amount(c.amount_minor),
            report.amount(c.bill_amount_minor),
            c.pending,
            c.repaired,
            c.attention,
            c.resolved
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("\t=1"), "'\t=1");
    }
}
