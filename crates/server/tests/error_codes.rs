//! The error codes a client can see and the table in docs/API.md agree both ways: every
//! code is documented, every documented code exists, and every code is used somewhere in
//! the server (a code nothing returns is a documented promise nobody keeps).

use std::collections::BTreeSet;
use std::path::Path;
use zerodrop_server::http::error::ErrorCode;

const API_MD: &str = include_str!("../../../docs/API.md");
/// The header row of the error-code table.
const TABLE_HEADER: &str = "| status | code | when |";

fn documented() -> BTreeSet<String> {
    let start = API_MD.find(TABLE_HEADER).expect("docs/API.md has the error-code table");
    let mut codes = BTreeSet::new();
    for line in API_MD[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let column = line.split('|').nth(2).unwrap_or_default();
        for code in column.split('`').skip(1).step_by(2) {
            codes.insert(code.to_owned());
        }
    }
    codes
}

#[test]
fn every_code_is_documented_and_every_documented_code_exists() {
    let ours: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.as_str().to_owned()).collect();
    let documented = documented();
    assert!(documented.len() > 10, "the table parsed to too few codes: {documented:?}");
    let undocumented: Vec<_> = ours.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&ours).collect();
    assert!(undocumented.is_empty(), "codes missing from docs/API.md: {undocumented:?}");
    assert!(unknown.is_empty(), "docs/API.md lists codes the server does not have: {unknown:?}");
}

#[test]
fn codes_are_unique_snake_case() {
    let mut seen = BTreeSet::new();
    for code in ErrorCode::ALL {
        let text = code.as_str();
        assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{text}");
        assert!(seen.insert(text), "{text} twice");
    }
}

#[test]
fn every_code_is_returned_somewhere() {
    let mut source = String::new();
    read_all(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut source);
    for code in ErrorCode::ALL {
        let used = format!("ErrorCode::{code:?}");
        assert!(source.contains(&used), "{} ({used}) is declared but never returned", code.as_str());
    }
}

fn read_all(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_all(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
}
