//! Money: integer fen (分, 1/100 yuan), CNY only, checked arithmetic.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in fen (分). Never a float.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Fen(pub u64);

impl Fen {
    pub const ZERO: Fen = Fen(0);

    #[must_use]
    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    #[must_use]
    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).map(Fen)
    }

    /// Parses a yuan amount written as digits with at most two decimals and
    /// optional thousands commas: "1234.56", "1,234.5", "¥12". Exact: no
    /// floating point is involved.
    pub fn parse_yuan(text: &str) -> Result<Fen, String> {
        let text = text.trim();
        let text = text
            .strip_prefix('¥')
            .or_else(|| text.strip_prefix('￥'))
            .unwrap_or(text);
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let whole: String = whole.chars().filter(|c| *c != ',').collect();
        let bad = || format!("{text:?} is not an amount in yuan like 1234.56");
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{text:?} has more than two decimals; the smallest unit is one fen (0.01)"
            ));
        }
        let yuan: u64 = whole.parse().map_err(|_| bad())?;
        let mut fen_part: u64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            let digit = u64::from(b - b'0');
            fen_part += if i == 0 { digit * 10 } else { digit };
        }
        yuan.checked_mul(100)
            .and_then(|f| f.checked_add(fen_part))
            .map(Fen)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

/// Formats fen as yuan with thousands separators: `¥1,234.56`. Takes u128
/// so that totals over many amounts print exactly too. The one money
/// formatter: [`Fen`]'s `Display` and every report use it.
pub fn format_fen(amount_fen: u128) -> String {
    let yuan = amount_fen / 100;
    let fen = amount_fen % 100;
    let digits = yuan.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("¥{grouped}.{fen:02}")
}

/// Formats fen as plain yuan with two decimals and no separators,
/// `1234.56`: the number a spreadsheet reads from a CSV cell.
pub fn plain_yuan(amount_fen: u128) -> String {
    format!("{}.{:02}", amount_fen / 100, amount_fen % 100)
}

impl fmt::Display for Fen {
    /// Formats as yuan with thousands separators: `¥1,234.56`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_fen(u128::from(self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_yuan_has_two_decimals_and_no_separators() {
        assert_eq!(plain_yuan(0), "0.00");
        assert_eq!(plain_yuan(5), "0.05");
        assert_eq!(plain_yuan(123_456), "1234.56");
        assert_eq!(plain_yuan(u128::from(u64::MAX)), "184467440737095516.15");
    }

    #[test]
    fn formats_yuan() {
        assert_eq!(Fen(0).to_string(), "¥0.00");
        assert_eq!(Fen(5).to_string(), "¥0.05");
        assert_eq!(Fen(123_456).to_string(), "¥1,234.56");
        assert_eq!(Fen(100_000_000).to_string(), "¥1,000,000.00");
        assert_eq!(Fen(u64::MAX).to_string(), "¥184,467,440,737,095,516.15");
    }

    #[test]
    fn parses_yuan_exactly() {
        assert_eq!(Fen::parse_yuan("1234.56"), Ok(Fen(123_456)));
        assert_eq!(Fen::parse_yuan("1,234.5"), Ok(Fen(123_450)));
        assert_eq!(Fen::parse_yuan("¥12"), Ok(Fen(1_200)));
        assert_eq!(Fen::parse_yuan("0.01"), Ok(Fen(1)));
        assert!(Fen::parse_yuan("1.234").is_err());
        assert!(Fen::parse_yuan("-1").is_err());
        assert!(Fen::parse_yuan("").is_err());
        assert!(Fen::parse_yuan("1e5").is_err());
        assert!(Fen::parse_yuan("99999999999999999999").is_err());
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(fen in 0u64..=u64::MAX / 100) {
            prop_assert_eq!(Fen::parse_yuan(&Fen(fen).to_string()), Ok(Fen(fen)));
        }
    }
}
