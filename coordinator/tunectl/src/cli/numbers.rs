//! How `tunectl` writes numbers: the shortest text that reads back as the same `f64` for CSV
//! (JSON gets the same from `serde_json`), a few significant digits for people, and dollar
//! costs that say "unknown" when agents had no price, rather than `$0`.

/// What to do when a cost shows as unknown: agents without an instance type or a price charge
/// every trial $0.
pub const PRICE_HINT: &str = "no agent had a price: start agents with \
    --instance-type NAME or --price-per-hour DOLLARS (tunectl local: --instance-type NAME)";

/// Significant digits of numbers meant for people.
pub const DIGITS: usize = 4;

/// The shortest text that parses back to exactly `value` (`1e-8`, `0.5`, `3.0`).
pub fn exact(value: f64) -> String {
    // `Debug` for f64 is Rust's shortest round-trip form, switching to an exponent for very
    // small and very large magnitudes (unlike `Display`, which writes 0.00000001).
    format!("{value:?}")
}

/// `value` rounded to `digits` significant digits, without trailing zeros: fixed notation for
/// magnitudes in 1e-4 ..< 10^digits, an exponent outside it (`0.7734`, `0.0005`, `1e-8`, `1.235e6`).
pub fn significant(value: f64, digits: usize) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let digits = digits.max(1);
    let scientific = format!("{value:.prec$e}", prec = digits - 1);
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("LowerExp output has an exponent");
    let exponent: i32 = exponent.parse().expect("LowerExp exponents are integers");
    let fixed_range = -4..i32::try_from(digits).unwrap_or(i32::MAX);
    if fixed_range.contains(&exponent) {
        let decimals =
            usize::try_from(i32::try_from(digits).unwrap_or(i32::MAX) - 1 - exponent).unwrap_or(0);
        trim_zeros(&format!("{value:.decimals$}"))
    } else {
        format!("{}e{exponent}", trim_zeros(mantissa))
    }
}

fn trim_zeros(text: &str) -> String {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text.to_string()
    }
}

/// A cost for people: `$` and [`DIGITS`] significant digits, or `unknown` when it is $0 for
/// work that was done (`ran`), which means no agent had a price.
pub fn dollars(cost_dollars: f64, ran: bool) -> String {
    if cost_known(cost_dollars, ran) {
        format!("${}", significant(cost_dollars, DIGITS))
    } else {
        "unknown".to_string()
    }
}

/// [`dollars`], followed by [`PRICE_HINT`] when the cost is unknown.
pub fn dollars_with_hint(cost_dollars: f64, ran: bool) -> String {
    if cost_known(cost_dollars, ran) {
        dollars(cost_dollars, ran)
    } else {
        format!("unknown ({PRICE_HINT})")
    }
}

/// Whether a cost is a real number: anything but $0 for work that was done.
pub fn cost_known(cost_dollars: f64, ran: bool) -> bool {
    cost_dollars != 0.0 || !ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_text_reads_back_as_the_same_number() {
        for value in [1e-8, 0.0005, 0.5, 1.0, 123.456, 1e20, -3.25e-12, 0.1 + 0.2] {
            let text = exact(value);
            assert_eq!(text.parse::<f64>().expect("parses"), value, "{text}");
        }
        assert_eq!(exact(1e-8), "1e-8");
        assert_eq!(exact(0.0005), "0.0005");
    }

    #[test]
    fn significant_digits_round_and_switch_to_an_exponent_outside_the_fixed_range() {
        let cases = [
            (0.773_456, "0.7735"),
            (0.0005, "0.0005"),
            (0.000_123_456, "0.0001235"),
            (1e-8, "1e-8"),
            (1.234_56e-5, "1.235e-5"),
            (123.456, "123.5"),
            (9_999.6, "1e4"),
            (1_234_567.0, "1.235e6"),
            (12.0, "12"),
            (-0.5, "-0.5"),
            (0.0, "0"),
        ];
        for (value, expected) in cases {
            assert_eq!(significant(value, 4), expected, "{value}");
        }
        assert_eq!(significant(f64::NAN, 4), "NaN");
    }

    #[test]
    fn a_zero_cost_for_work_done_is_unknown_and_says_how_to_set_a_price() {
        assert_eq!(dollars(0.0123456, true), "$0.01235");
        assert_eq!(dollars(0.0, false), "$0", "nothing ran yet");
        assert_eq!(dollars(0.0, true), "unknown");
        let hinted = dollars_with_hint(0.0, true);
        assert!(
            hinted.starts_with("unknown (") && hinted.contains("--instance-type"),
            "{hinted}"
        );
        assert_eq!(dollars_with_hint(2.5, true), "$2.5");
    }
}
