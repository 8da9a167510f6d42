//! Environment overrides: `ZERODROP_*` variables name a key path with `__` between levels
//! (`ZERODROP_ORDERS__TTL_SECS`, `ZERODROP_PROVIDERS__0__APP_ID`). Values are read as
//! TOML (numbers, arrays, booleans) and otherwise as strings. An error about a value a
//! variable set names the variable, never the value: variables carry secrets.

use super::redact::{blank_values, error_key_path};

/// The prefix of every configuration variable.
pub const ENV_PREFIX: &str = "ZERODROP_";

/// A variable that set a key: its name and the key path it set.
pub struct Override {
    pub variable: String,
    pub path: Vec<String>,
}

/// Applies one variable (`key` is its name without the prefix); returns what it set, or
/// why it cannot (naming the variable).
pub fn apply(table: &mut toml::Table, key: &str, value: &str) -> Result<Override, String> {
    let path: Vec<String> = key.split("__").map(|s| s.to_ascii_lowercase()).collect();
    let variable = format!("{ENV_PREFIX}{key}");
    let parsed = parse_value(value);
    set_path(&mut toml::Value::Table(std::mem::take(table)), &path, parsed)
        .map(|root| {
            if let toml::Value::Table(t) = root {
                *table = t;
            }
        })
        .map_err(|m| format!("{variable}: {m}"))?;
    Ok(Override { variable, path })
}

/// A deserialization error in words: the key it is about and the variable that set that
/// key, if one did; never the value.
pub fn describe(e: &toml::de::Error, overrides: &[Override]) -> String {
    let message = blank_values(e.message());
    let mut path: Vec<String> =
        error_key_path(e).map(|p| p.split('.').map(str::to_owned).collect()).unwrap_or_default();
    // An unknown key is named in the message, one level below the path.
    if let Some(field) = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()) {
        path.push(field.to_owned());
    }
    let shown = path.join(".");
    // The last variable that set this key, or a key inside or around it, is the one read.
    // Array indices are left out: toml names the array, not the element.
    let culprit = overrides.iter().rev().find(|o| {
        let named: Vec<&String> = o.path.iter().filter(|s| s.parse::<usize>().is_err()).collect();
        let n = named.len().min(path.len());
        !path.is_empty() && named[..n].iter().zip(&path[..n]).all(|(a, b)| *a == b)
    });
    match (culprit, shown.is_empty()) {
        (Some(o), _) => format!("{} (key {shown}): {message}", o.variable),
        (None, false) => format!("{shown}: {message}"),
        (None, true) => message,
    }
}

fn parse_value(value: &str) -> toml::Value {
    // `x = <value>` parses numbers, booleans and arrays; anything else is a string.
    match toml::from_str::<toml::Table>(&format!("x = {value}")) {
        Ok(mut t) => t.remove("x").unwrap_or_else(|| toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.into()),
    }
}
fn set_path(root: &mut toml::Value, path: &[String], value: toml::Value) -> Result<toml::Value, String> {
    let mut node = &mut *root;
    for (i, segment) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        node = match node {
            toml::Value::Table(t) => {
                if last {
                    t.insert(segment.clone(), value);
                    return Ok(std::mem::replace(root, toml::Value::Boolean(false)));
                }
                let next_is_index = path[i + 1].parse::<usize>().is_ok();
                t.entry(segment.clone()).or_insert_with(|| {
                    if next_is_index {
                        toml::Value::Array(Vec::new())
                    } else {
                        toml::Value::Table(toml::Table::new())
                    }
                })
            }
            toml::Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| format!("{segment} is not an index"))?;
                if index > items.len() {
                    return Err(format!("index {index} skips entries"));
                }
                if index == items.len() {
                    items.push(toml::Value::Table(toml::Table::new()));
                }
                if last {
                    items[index] = value;
                    return Ok(std::mem::replace(root, toml::Value::Boolean(false)));
                }
                &mut items[index]
            }
            _ => return Err(format!("{segment} is not a table")),
        };
    }
    Err("empty key".into())
}
