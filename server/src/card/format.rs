//! Values on the card as the agent reads them: numbers, money and dates in the locale Infobip's token gives
//! (`en_US`, `hr`, `de-DE` …), from glibc's locale data. A value that does not read as its declared format is
//! shown as the partner sent it: the agent still sees it, and nothing fails for want of a pretty form.

use app::definition::ValueFormat;
use chrono::{DateTime, FixedOffset, NaiveDate};
use pure_rust_locales::{locale_match, Locale};
use serde_json::Value;

/// The fallback for a missing or unknown locale (documented in docs/app-definition.md).
const DEFAULT_LOCALE: Locale = Locale::en_US;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLocale(Locale);

impl Default for AgentLocale {
    fn default() -> Self {
        AgentLocale(DEFAULT_LOCALE)
    }
}

impl AgentLocale {
    /// Reads Infobip's locale tag leniently: `-` or `_`, any case, an encoding or modifier suffix, or a language
    /// alone (`hr` is read as `hr_HR`); anything else is [`DEFAULT_LOCALE`].
    pub fn from_tag(tag: &str) -> Self {
        let base = tag.trim().split(['.', '@']).next().unwrap_or_default();
        let mut parts = base.split(['-', '_']);
        let language = parts.next().unwrap_or_default().to_ascii_lowercase();
        let region = parts.next().map(str::to_ascii_uppercase);
        let candidates = [
            region.map(|r| format!("{language}_{r}")),
            Some(format!("{language}_{}", language.to_ascii_uppercase())),
            Some(language.clone()),
        ];
        candidates
            .into_iter()
            .flatten()
            .find_map(|c| Locale::try_from(c.as_str()).ok())
            .map_or_else(AgentLocale::default, AgentLocale)
    }

    /// `value` as text in `format`; `currency` is the ISO code for money.
    pub fn show(&self, value: &Value, format: ValueFormat, currency: Option<&str>) -> String {
        let raw = match value {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let shown = match format {
            ValueFormat::Text | ValueFormat::Link => None,
            ValueFormat::Number => self.number(&raw),
            ValueFormat::Money => currency.and_then(|c| self.money(&raw, c)),
            ValueFormat::Date => self.date(&raw),
            ValueFormat::Datetime => self.datetime(&raw),
        };
        shown.unwrap_or(raw)
    }

    /// Keeps the decimals the partner sent (`12.5` stays one decimal), groups the whole part.
    fn number(&self, raw: &str) -> Option<String> {
        let raw = raw.trim();
        raw.parse::<f64>().ok().filter(|n| n.is_finite())?;
        let (negative, digits) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw.strip_prefix('+').unwrap_or(raw)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return None; // exponents and the like: shown as sent
        }
        let locale = self.0;
        let mut out = String::from(if negative { "-" } else { "" });
        out.push_str(&group(
            whole,
            locale_match!(locale => LC_NUMERIC::THOUSANDS_SEP),
            locale_match!(locale => LC_NUMERIC::GROUPING),
        ));
        if !fraction.is_empty() {
            out.push_str(locale_match!(locale => LC_NUMERIC::DECIMAL_POINT));
            out.push_str(fraction);
        }
        Some(out)
    }

    /// The locale's monetary separators, decimals and symbol placement; the currency by its ISO code, or by the
    /// locale's own symbol when it is the locale's currency (€ in `de_DE`, $ in `en_US`).
    fn money(&self, raw: &str, currency: &str) -> Option<String> {
        let amount: f64 = raw.trim().parse().ok().filter(|n: &f64| n.is_finite())?;
        let locale = self.0;
        let own_code = locale_match!(locale => LC_MONETARY::INT_CURR_SYMBOL).trim();
        let symbol = if own_code.eq_ignore_ascii_case(currency) {
            locale_match!(locale => LC_MONETARY::CURRENCY_SYMBOL).to_owned()
        } else {
            currency.to_ascii_uppercase()
        };
        let decimals = usize::try_from(locale_match!(locale => LC_MONETARY::FRAC_DIGITS))
            .unwrap_or(2)
            .min(4);
        let fixed = format!("{:.*}", decimals, amount.abs());
        let (whole, fraction) = fixed.split_once('.').unwrap_or((&fixed, ""));
        let mut number = group(
            whole,
            locale_match!(locale => LC_MONETARY::MON_THOUSANDS_SEP),
            locale_match!(locale => LC_MONETARY::MON_GROUPING),
        );
        if !fraction.is_empty() {
            number.push_str(locale_match!(locale => LC_MONETARY::MON_DECIMAL_POINT));
            number.push_str(fraction);
        }
        // A code (EUR) always takes a space; a symbol follows the locale.
        let space = if symbol.chars().all(|c| c.is_ascii_uppercase())
            || locale_match!(locale => LC_MONETARY::P_SEP_BY_SPACE) != 0
        {
            "\u{a0}"
        } else {
            ""
        };
        let sign = if amount < 0.0 { "-" } else { "" };
        Some(
            if locale_match!(locale => LC_MONETARY::P_CS_PRECEDES) != 0 {
                format!("{sign}{symbol}{space}{number}")
            } else {
                format!("{sign}{number}{space}{symbol}")
            },
        )
    }

    fn date(&self, raw: &str) -> Option<String> {
        let raw = raw.trim();
        let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .ok()
            .or_else(|| {
                DateTime::parse_from_rfc3339(raw)
                    .ok()
                    .map(|t| t.date_naive())
            })?;
        let locale = self.0;
        localized(date.format_localized(locale_match!(locale => LC_TIME::D_FMT), locale))
    }

    /// At the offset the partner gave, which is named: the agent's own time zone is not in Infobip's token.
    fn datetime(&self, raw: &str) -> Option<String> {
        let at: DateTime<FixedOffset> = DateTime::parse_from_rfc3339(raw.trim()).ok()?;
        let locale = self.0;
        let twelve_hours = locale_match!(locale => LC_TIME::AM_PM)
            .iter()
            .any(|s| !s.is_empty());
        let time = if twelve_hours { "%-I:%M %p" } else { "%H:%M" };
        let zone = if at.offset().local_minus_utc() == 0 {
            "UTC"
        } else {
            "UTC%:z"
        };
        let pattern = format!("{} {time} {zone}", locale_match!(locale => LC_TIME::D_FMT));
        localized(at.format_localized(&pattern, locale))
    }
}

/// Some glibc date formats use directives chrono does not know (`%Ey`, `%Od` … in th_TH, fa_IR, my_MM): its
/// formatter then fails, and `to_string` would panic. Written out here, a failure is `None`, and the value is
/// shown as the partner sent it.
fn localized(shown: impl std::fmt::Display) -> Option<String> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{shown}").ok()?;
    Some(out)
}

/// Digit groups as the locale's `grouping` says (glibc's form: sizes from the right, the last one repeating,
/// -1 or 0 meaning no further grouping).
fn group(whole: &str, separator: &str, grouping: &[i64]) -> String {
    let digits: Vec<char> = whole.chars().collect();
    let mut sizes = grouping.iter().copied();
    let mut size = sizes.next().unwrap_or(-1);
    let mut end = digits.len();
    let mut groups: Vec<String> = Vec::new();
    while end > 0 {
        let take = match usize::try_from(size) {
            Ok(n) if n > 0 && n < end => n,
            _ => end,
        };
        groups.push(digits[end - take..end].iter().collect());
        end -= take;
        if let Some(next) = sizes.next() {
            size = next;
        }
    }
    groups.reverse();
    groups.join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn show(tag: &str, value: Value, format: ValueFormat, currency: Option<&str>) -> String {
        AgentLocale::from_tag(tag).show(&value, format, currency)
    }

    #[test]
    fn locale_tags_are_read_leniently() {
        assert_eq!(AgentLocale::from_tag("hr").0, Locale::hr_HR);
        assert_eq!(AgentLocale::from_tag("de-de").0, Locale::de_DE);
        assert_eq!(AgentLocale::from_tag("en_GB.UTF-8").0, Locale::en_GB);
        assert_eq!(AgentLocale::from_tag("").0, DEFAULT_LOCALE);
        assert_eq!(AgentLocale::from_tag("xx_YY").0, DEFAULT_LOCALE);
    }

    #[test]
    fn numbers_follow_the_locale() {
        assert_eq!(
            show("en_US", json!(1234567), ValueFormat::Number, None),
            "1,234,567"
        );
        assert_eq!(
            show("de_DE", json!(1234567.5), ValueFormat::Number, None),
            "1.234.567,5"
        );
        assert_eq!(show("en_US", json!(-12), ValueFormat::Number, None), "-12");
        assert_eq!(
            show("en_US", json!("n/a"), ValueFormat::Number, None),
            "n/a"
        );
    }

    #[test]
    fn money_follows_the_locale() {
        assert_eq!(
            show("en_US", json!(1234.5), ValueFormat::Money, Some("USD")),
            "$1,234.50"
        );
        assert_eq!(
            show("en_US", json!(59.9), ValueFormat::Money, Some("EUR")),
            "EUR\u{a0}59.90"
        );
        assert_eq!(
            show("de_DE", json!(1234.5), ValueFormat::Money, Some("EUR")),
            "1.234,50\u{a0}€"
        );
        assert_eq!(
            show("en_US", json!("x"), ValueFormat::Money, Some("EUR")),
            "x"
        );
    }

    #[test]
    fn dates_follow_the_locale() {
        assert_eq!(
            show("en_US", json!("2026-11-20"), ValueFormat::Date, None),
            "11/20/2026"
        );
        assert_eq!(
            show("de_DE", json!("2026-11-20"), ValueFormat::Date, None),
            "20.11.2026"
        );
        assert_eq!(
            show(
                "en_US",
                json!("2026-11-20T14:05:00Z"),
                ValueFormat::Datetime,
                None
            ),
            "11/20/2026 2:05 PM UTC"
        );
        assert_eq!(
            show(
                "de_DE",
                json!("2026-11-20T14:05:00+01:00"),
                ValueFormat::Datetime,
                None
            ),
            "20.11.2026 14:05 UTC+01:00"
        );
        assert_eq!(
            show("de_DE", json!("soon"), ValueFormat::Date, None),
            "soon"
        );
    }

    /// Every locale the data knows, with every format: no panic, and something shown.
    #[test]
    fn no_locale_breaks_a_value() {
        for tag in [
            "th",
            "fa-IR",
            "or_IN",
            "my-MM",
            "lo-LA",
            "TH-th.UTF-8@x",
            "az_IR",
            "lzh_TW",
        ] {
            for (value, format) in [
                (json!("2026-11-20"), ValueFormat::Date),
                (json!("2026-11-20T14:05:00Z"), ValueFormat::Datetime),
                (json!(1234.5), ValueFormat::Money),
                (json!(1234.5), ValueFormat::Number),
            ] {
                let shown = show(tag, value.clone(), format, Some("EUR"));
                assert!(!shown.is_empty(), "{tag} {format:?}");
            }
        }
    }

    #[test]
    fn grouping_repeats_the_last_size() {
        assert_eq!(group("1234567", ",", &[3, 3]), "1,234,567");
        assert_eq!(group("123456789", ",", &[3, 2]), "12,34,56,789");
        assert_eq!(group("1234", ",", &[-1]), "1234");
        assert_eq!(group("12", ",", &[3]), "12");
    }
}
