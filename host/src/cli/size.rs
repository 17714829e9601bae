//! Parsing sizes given on the command line: `1073741824`, `512`, `1M`,
//! `1G`, `1GiB`, `1.5T`, `10GB`.

/// Bytes per unit. A bare `K`, `M`, `G`, `T`, `P` or `KiB`... is binary, as
/// in most block-storage tools; an explicit `KB`, `MB`... is decimal.
fn multiplier(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    let (prefix, base) = match unit.as_str() {
        "" | "b" => return Some(1),
        u if u.ends_with("ib") => (&u[..u.len() - 2], 1024u64),
        u if u.ends_with('b') => (&u[..u.len() - 1], 1000),
        u => (u, 1024),
    };
    let power = ["k", "m", "g", "t", "p"]
        .iter()
        .position(|p| *p == prefix)?;
    Some(base.pow(u32::try_from(power).ok()? + 1))
}

/// Parses a size into bytes. Fractions are accepted when they come to a
/// whole number of bytes (`1.5K` is 1536, `0.1K` is refused).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim_start();
    let bad = || {
        format!(
            "invalid size {text:?}: expected bytes or a number with K, M, G, T, P (binary) or KB, MB, GB... (decimal)"
        )
    };
    let mult = multiplier(unit).ok_or_else(bad)?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let too_big = || format!("size {text:?} is too large");
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_big())?
    };
    let mut bytes = whole.checked_mul(mult).ok_or_else(too_big)?;
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        let digits = u32::try_from(frac.len()).map_err(|_| bad())?;
        let scale = 10u128.checked_pow(digits).ok_or_else(bad)?;
        let numerator: u128 = frac.parse().map_err(|_| bad())?;
        let scaled = numerator * u128::from(mult);
        if !scaled.is_multiple_of(scale) {
            return Err(format!("size {text:?} is not a whole number of bytes"));
        }
        let extra = u64::try_from(scaled / scale).map_err(|_| too_big())?;
        bytes = bytes.checked_add(extra).ok_or_else(too_big)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size(" 4096B "), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn binary_suffixes_in_any_case() {
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2 gib"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("1PiB"), Ok(1 << 50));
    }

    #[test]
    fn decimal_suffixes() {
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
    }

    #[test]
    fn exact_fractions() {
        assert_eq!(parse_size("1.5K"), Ok(1536));
        assert_eq!(parse_size("1.50G"), Ok(3 << 29));
        assert_eq!(parse_size(".5M"), Ok(512 << 10));
        assert!(parse_size("0.1K").unwrap_err().contains("whole number"));
    }

    #[test]
    fn garbage_and_overflow_are_refused() {
        for bad in [
            "", "G", "1X", "1GG", "-1", "1.2.3", "1 G B", ".", "1Gb2", "1ib",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(
            parse_size("99999999999999999999")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_size("20000P").unwrap_err().contains("too large"));
    }
}
