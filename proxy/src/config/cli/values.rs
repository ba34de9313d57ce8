//! Option values read the way C reads them (`atoi`, `strtoll`, `atof`, `sscanf`,
//! `parse_memory_limit`), and the seconds of our own timeouts.

use super::options::PortSpec;

/// C `atoi`: leading whitespace, optional sign, digits; the long result cut to `int`.
pub(super) fn atoi(s: &str) -> i32 {
    strtoll_prefix(s).map_or(0, |(v, _)| v as i32)
}

/// `strtoll`-like prefix parse: `Some((value, bytes consumed))` or `None` when no digits.
/// Saturates on overflow like glibc.
pub(super) fn strtoll_prefix(s: &str) -> Option<(i64, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut v: i64 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        let d = i64::from(d - b'0');
        v = if neg {
            v.saturating_mul(10).saturating_sub(d)
        } else {
            v.saturating_mul(10).saturating_add(d)
        };
        i += 1;
    }
    (i > start).then_some((v, i))
}

/// C `atof` (prefix of `strtod`), enough for `-T`.
pub(super) fn atof(s: &str) -> f64 {
    let t = s.trim_start();
    (1..=t.len())
        .rev()
        .filter(|&n| t.is_char_boundary(n))
        .find_map(|n| t.get(..n).and_then(|p| p.parse::<f64>().ok()))
        .unwrap_or(0.0)
}

/// C `parse_memory_limit` (`--msg-buffers-size`): a number and an optional k/m/g/t suffix.
pub(super) fn parse_memory_limit(s: &str) -> Result<i64, String> {
    let Some((x, used)) = strtoll_prefix(s) else {
        return Err(format!("Parsing limit for option fail: {s}"));
    };
    let c = s.as_bytes().get(used).copied().unwrap_or(0);
    let shift = match c | 0x20 {
        b' ' => 0,
        b'k' => 10,
        b'm' => 20,
        b'g' => 30,
        b't' => 40,
        _ => {
            let shown = s.get(used..).and_then(|r| r.chars().next()).unwrap_or('?');
            return Err(format!("Parsing limit fail. Unknown suffix '{shown}'."));
        }
    };
    Ok(x.wrapping_shl(shift))
}

/// C `sscanf(optarg, "%d:%d")` for `-p`.
pub(super) fn parse_port(s: &str) -> Option<PortSpec> {
    let (start, used) = strtoll_prefix(s)?;
    let start = start as i32;
    let rest = s.get(used..).unwrap_or("");
    let end = rest
        .strip_prefix(':')
        .and_then(strtoll_prefix)
        .map(|(v, _)| v as i32);
    match end {
        None => (start > 0).then_some(PortSpec::Port(start)),
        Some(end) => (start > 0 && start <= end).then_some(PortSpec::Range(start, end)),
    }
}

/// Seconds for our own timeouts: a decimal number from 0 to a day.
pub(super) fn parse_seconds(s: &str) -> Option<std::time::Duration> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && (0.0..=86_400.0).contains(&v)).then(|| std::time::Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn integers_read_a_prefix_like_c() {
        assert_eq!(strtoll_prefix(" \t+7x"), Some((7, 4)));
        assert_eq!(strtoll_prefix("-12"), Some((-12, 3)));
        assert_eq!(strtoll_prefix("-"), None);
        assert_eq!(strtoll_prefix("x1"), None);
        assert_eq!(strtoll_prefix("99999999999999999999"), Some((i64::MAX, 20)));
        assert_eq!(
            strtoll_prefix("-99999999999999999999"),
            Some((i64::MIN, 21))
        );
        assert_eq!(atoi("  -12abc"), -12);
        assert_eq!((atoi(""), atoi("abc")), (0, 0));
    }

    #[test]
    fn floats_read_the_longest_number_prefix() {
        assert_eq!(atof("2.5x"), 2.5);
        assert_eq!(atof(" 1e3"), 1000.0);
        assert_eq!(atof("abc"), 0.0);
        assert_eq!(atof(""), 0.0);
    }

    #[test]
    fn memory_limits_take_a_binary_suffix() {
        assert_eq!(parse_memory_limit("10"), Ok(10));
        assert_eq!(parse_memory_limit(" 10 "), Ok(10));
        assert_eq!(parse_memory_limit("10M"), Ok(10 << 20));
        assert_eq!(parse_memory_limit("2g"), Ok(2 << 30));
        assert_eq!(parse_memory_limit("1t"), Ok(1 << 40));
        assert_eq!(
            parse_memory_limit("10x"),
            Err("Parsing limit fail. Unknown suffix 'x'.".into())
        );
        assert_eq!(
            parse_memory_limit(""),
            Err("Parsing limit for option fail: ".into())
        );
    }

    #[test]
    fn ports_are_one_or_a_range() {
        assert_eq!(parse_port("80"), Some(PortSpec::Port(80)));
        assert_eq!(parse_port("80:"), Some(PortSpec::Port(80)));
        assert_eq!(parse_port("1:2"), Some(PortSpec::Range(1, 2)));
        assert_eq!(parse_port("3:3"), Some(PortSpec::Range(3, 3)));
        for bad in ["", "0", "-80", "5:3", "0:5", "abc"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds_are_a_number_from_zero_to_a_day() {
        assert_eq!(parse_seconds("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_seconds(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_seconds("86400"), Some(Duration::from_secs(86_400)));
        for bad in ["-1", "86401", "NaN", "inf", "soon", ""] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }
}
