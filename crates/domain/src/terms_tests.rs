//! Parsing, defaults, validation messages and the canonical JSON of plan terms.

use super::*;

pub(crate) const PLAN: &str = r#"
[[plan]]
id = "svip_monthly"
title = "SVIP monthly"
membership = "svip"
currency = "CNY"

[[plan.terms]]
version = 1
price = "25.00"
period_days = 30
how_to_terminate = { zh_cn = "在“我的-会员”中点击“解约”。", en = "Tap End agreement under Me > Membership." }

[[plan.terms]]
version = 2
price = "20.00"
period_days = 30
minimum_term_periods = 12
early_termination_fee = { kind = "remaining_share", percent = 50 }
termination_effective = "at_once"
grace_days = 5
retry_offsets_days = [1, 3, 5]
lapse_policy = "keep_agreement"
remind_days_before = 5
how_to_terminate = { zh_cn = "在“我的-会员”中点击“解约”。", en = "Tap End agreement under Me > Membership." }
"#;

#[test]
fn plans_parse_with_defaults_and_versions() {
    let plans = Plans::from_toml(PLAN).unwrap();
    let plan = plans.get("svip_monthly").unwrap();
    assert_eq!(plan.current().unwrap().version, 2);
    let v1 = plan.version(1).unwrap();
    assert_eq!(v1.price, Money::new(2500, Currency::Cny));
    assert_eq!(v1.early_termination_fee, FeeRule::None);
    assert_eq!(v1.termination_effective, EffectiveAt::EndOfPaidPeriod);
    assert_eq!((v1.grace_days, v1.retry_offsets_days.clone()), (3, vec![1, 3]));
    assert_eq!((v1.remind_days_before, v1.lapse_policy), (3, LapsePolicy::Terminate));
    let v2 = plan.version(2).unwrap();
    assert_eq!(v2.early_termination_fee, FeeRule::RemainingShare { percent: 50 });
    assert_eq!(v2.minimum_term_periods, 12);
    assert_eq!(v2.price_of_periods(3), Money::new(6000, Currency::Cny));
    let json = serde_json::to_value(&plans).unwrap();
    assert_eq!(json["svip_monthly"]["versions"]["2"]["early_termination_fee"]["percent"], 50);
}

#[test]
fn the_canonical_json_is_sorted_and_stable() {
    let plans = Plans::from_toml(PLAN).unwrap();
    let v1 = plans.get("svip_monthly").unwrap().version(1).unwrap();
    let json = v1.canonical_json().unwrap();
    assert!(json.starts_with(r#"{"early_termination_fee":{"kind":"none"},"grace_days":3,"#), "{json}");
    assert!(json.contains(r#""price":{"currency":"CNY","minor":2500}"#), "{json}");
    assert_eq!(json, v1.clone().canonical_json().unwrap());
    let mut changed = v1.clone();
    changed.remind_days_before = 4;
    assert_ne!(changed.canonical_json().unwrap(), json);
    // Round trip: the stored snapshot reads back as the same terms.
    assert_eq!(&serde_json::from_str::<TermsVersion>(&json).unwrap(), v1);
}

#[test]
fn bad_terms_are_refused_with_the_field_named() {
    let head = "[[plan]]\nid = \"p\"\ntitle = \"t\"\nmembership = \"svip\"\ncurrency = \"CNY\"\n\
                [[plan.terms]]\nhow_to_terminate = { zh_cn = \"x\", en = \"x\" }\n";
    let ok = "version = 1\nprice = \"1\"\nperiod_days = 30\n";
    let cases = [
        (format!("{head}version = 0\nprice = \"1\"\nperiod_days = 30\n"), "version"),
        (format!("{head}version = 1\nprice = \"0\"\nperiod_days = 30\n"), "price"),
        (format!("{head}version = 1\nprice = \"1\"\nperiod_days = 3\n"), "period_days"),
        (format!("{head}{ok}minimum_term_periods = 99\n"), "minimum_term_periods"),
        (format!("{head}{ok}early_termination_fee = {{ kind = \"fixed\", amount = \"5\" }}\n"), "minimum term"),
        (format!("{head}{ok}minimum_term_periods = 3\nearly_termination_fee = {{ kind = \"remaining_share\", percent = 101 }}\n"), "early_termination_fee"),
        (format!("{head}{ok}minimum_term_periods = 3\nearly_termination_fee = {{ kind = \"fixed\", percent = 1 }}\n"), "early_termination_fee"),
        (format!("{head}{ok}grace_days = 31\n"), "grace_days"),
        (format!("{head}{ok}grace_days = 2\n"), "retry_offsets_days"),
        (format!("{head}{ok}retry_offsets_days = [2, 1]\n"), "retry_offsets_days"),
        (format!("{head}{ok}grace_days = 0\nretry_offsets_days = [1]\n"), "retry_offsets_days"),
        (format!("{head}{ok}remind_days_before = 1\n"), "remind_days_before"),
        (format!("{head}{ok}lapse_policy = \"maybe\"\n"), "lapse_policy"),
        (format!("{head}{ok}surprise = 1\n"), "surprise"),
    ];
    for (text, needle) in cases {
        let err = Plans::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
    }
    let empty_text = head.replace("zh_cn = \"x\"", "zh_cn = \" \"");
    let err = Plans::from_toml(&format!("{empty_text}{ok}")).unwrap_err().to_string();
    assert!(err.contains("how_to_terminate"), "{err}");
    let twice = format!("{head}{ok}[[plan.terms]]\nhow_to_terminate = {{ zh_cn = \"x\", en = \"x\" }}\n{ok}");
    assert!(matches!(Plans::from_toml(&twice), Err(TermsError::DuplicateVersion { version: 1, .. })));
    let none = "[[plan]]\nid = \"p\"\ntitle = \"t\"\nmembership = \"svip\"\ncurrency = \"CNY\"\n";
    assert_eq!(Plans::from_toml(none), Err(TermsError::NoVersions("p".into())));
    let zero_grace = format!("{head}{ok}grace_days = 0\nretry_offsets_days = []\n");
    assert!(Plans::from_toml(&zero_grace).is_ok());
}
