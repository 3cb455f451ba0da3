//! How a bench target was started.

/// The size a bench target runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Started without `--bench` (as `cargo test --all-targets` does): tiny sizes, to
    /// check the target still runs; nothing is reported.
    Smoke,
    /// `cargo xtask bench --quick` (`STRATA_BENCH_QUICK=1`): smaller sizes, short
    /// criterion measurements.
    Quick,
    /// `cargo xtask bench`: the sizes the metric names promise.
    Full,
}

impl Mode {
    /// The mode of this process, from its arguments and `STRATA_BENCH_QUICK`.
    pub fn current() -> Mode {
        let bench = std::env::args().any(|a| a == "--bench");
        let quick = std::env::var_os("STRATA_BENCH_QUICK").is_some_and(|v| v != "0");
        match (bench, quick) {
            (false, _) => Mode::Smoke,
            (true, true) => Mode::Quick,
            (true, false) => Mode::Full,
        }
    }

    /// Whether figures are measured and reported (not a smoke run).
    pub fn is_bench(self) -> bool {
        self != Mode::Smoke
    }

    /// `full` in [`Mode::Full`], a tenth of it in [`Mode::Quick`] and a thousandth in
    /// [`Mode::Smoke`], never below `min`.
    pub fn scale(self, full: u64, min: u64) -> u64 {
        let divisor = match self {
            Mode::Full => 1,
            Mode::Quick => 10,
            Mode::Smoke => 1000,
        };
        (full / divisor).max(min)
    }

    /// One of three values by mode.
    pub fn pick<V>(self, smoke: V, quick: V, full: V) -> V {
        match self {
            Mode::Smoke => smoke,
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[test]
    fn scale_divides_by_mode_and_keeps_a_floor() {
        assert_eq!(Mode::Full.scale(10_000, 3), 10_000);
        assert_eq!(Mode::Quick.scale(10_000, 3), 1_000);
        assert_eq!(Mode::Smoke.scale(10_000, 3), 10);
        assert_eq!(Mode::Smoke.scale(2_000, 30), 30);
    }
}
