//! Every duration option of the command line (`--interval`, `--duration`,
//! `--open-timeout`, `--shutdown-grace`) takes humantime's grammar (`500ms`, `2s`,
//! `1.5s`, `1m 30s`) or a plain number of seconds (`2`, `0.5`), as these options always
//! did. Each option's parser also checks its bounds, so a bad value is a usage error.

use std::time::Duration;

/// Why a duration option's value was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DurationError {
    /// Not humantime's grammar nor a plain number.
    #[error("{text:?} is not a duration such as 1s, 500ms or 1m30s ({reason})")]
    Invalid {
        /// The value as given.
        text: String,
        /// What humantime found wrong.
        reason: humantime::DurationError,
    },
    /// Zero, where the option needs some time.
    #[error("{text:?} is zero: give a positive duration such as 1s")]
    Zero {
        /// The value as given.
        text: String,
    },
    /// Below the option's minimum.
    #[error("{text:?} is too short: at least {min}", min = humantime::format_duration(*.min))]
    TooShort {
        /// The value as given.
        text: String,
        /// The shortest value accepted.
        min: Duration,
    },
    /// Above the option's maximum.
    #[error("{text:?} is too long: at most {max}", max = humantime::format_duration(*.max))]
    TooLong {
        /// The value as given.
        text: String,
        /// The longest value accepted.
        max: Duration,
    },
}

/// The shortest `strata top --interval`: faster would only load the location.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest `strata demo --duration`.
pub(crate) const MAX_RUN: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration: humantime's grammar, or a plain number of seconds.
pub(crate) fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let plain_seconds =
        !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.');
    let parsed = if plain_seconds {
        humantime::parse_duration(&format!("{trimmed}s"))
    } else {
        humantime::parse_duration(trimmed)
    };
    parsed.map_err(|reason| DurationError::Invalid {
        text: text.to_owned(),
        reason,
    })
}

/// A duration that must not be zero (`--open-timeout`).
pub(crate) fn positive(text: &str) -> Result<Duration, DurationError> {
    let duration = parse(text)?;
    if duration.is_zero() {
        return Err(DurationError::Zero {
            text: text.to_owned(),
        });
    }
    Ok(duration)
}

/// `strata top --interval`: at least [`MIN_INTERVAL`].
pub(crate) fn interval(text: &str) -> Result<Duration, DurationError> {
    let duration = parse(text)?;
    if duration < MIN_INTERVAL {
        return Err(DurationError::TooShort {
            text: text.to_owned(),
            min: MIN_INTERVAL,
        });
    }
    Ok(duration)
}

/// `strata demo --duration`: positive and at most [`MAX_RUN`].
pub(crate) fn run_time(text: &str) -> Result<Duration, DurationError> {
    let duration = positive(text)?;
    if duration > MAX_RUN {
        return Err(DurationError::TooLong {
            text: text.to_owned(),
            max: MAX_RUN,
        });
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parser = fn(&str) -> Result<Duration, DurationError>;

    /// `Ok(ms)` for a value, or `Err(needle)` that the message must contain.
    fn check(parser: Parser, text: &str, want: Result<u64, &str>) {
        match (parser(text), want) {
            (Ok(got), Ok(ms)) => assert_eq!(got, Duration::from_millis(ms), "{text}"),
            (Err(got), Err(needle)) => {
                let message = got.to_string();
                assert!(message.contains(needle), "{text}: {message}");
            }
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn grammar() {
        check(parse, "1s", Ok(1000));
        check(parse, "500ms", Ok(500));
        check(parse, "1.5s", Ok(1500));
        check(parse, "1m 30s", Ok(90_000));
        check(parse, "1m30s", Ok(90_000));
        check(parse, " 250 ms", Ok(250));
        check(parse, "2", Ok(2000));
        check(parse, "0.5", Ok(500));
        check(parse, "0", Ok(0));
        check(parse, "-1s", Err("\"-1s\" is not a duration such as 1s"));
        check(parse, "soon", Err("is not a duration"));
        check(parse, "", Err("value was empty"));
        check(parse, "1.", Err("is not a duration"));
        check(parse, "2 fortnights", Err("unknown time unit"));
    }

    #[test]
    fn bounds() {
        check(interval, "100ms", Ok(100));
        check(
            interval,
            "50ms",
            Err("\"50ms\" is too short: at least 100ms"),
        );
        check(interval, "0", Err("too short"));
        check(positive, "30s", Ok(30_000));
        check(positive, "0s", Err("\"0s\" is zero"));
        check(run_time, "24h", Ok(24 * 3600 * 1000));
        check(run_time, "0", Err("is zero"));
        check(run_time, "25h", Err("\"25h\" is too long: at most 1day"));
        check(run_time, "soon", Err("not a duration"));
    }
}
