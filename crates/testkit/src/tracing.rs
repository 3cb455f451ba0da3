//! [`init_test_tracing`]: log output for tests, installed once per process.
//!
//! Libraries never install a subscriber; tests and binaries do. This is the one call a
//! test makes to see Strata's `tracing` output, captured per test by the test harness.

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is unset or invalid.
pub const DEFAULT_TEST_FILTER: &str = "warn";

/// Installs a `tracing-subscriber` fmt subscriber as the global default, once.
///
/// - The filter comes from `RUST_LOG` (for example `RUST_LOG=strata=debug`), and is
///   [`DEFAULT_TEST_FILTER`] when that is unset or does not parse.
/// - Output goes through the test writer, so `cargo test` captures it per test and
///   shows it only for failing tests (or with `--nocapture`).
///
/// Idempotent: call it at the start of every test. If another global subscriber is
/// already installed, that one stays and this call does nothing.
///
/// # Examples
///
/// ```
/// use strata_testkit::init_test_tracing;
/// init_test_tracing();
/// init_test_tracing(); // a second call is a no-op
/// ```
pub fn init_test_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(DEFAULT_TEST_FILTER));
        // An error only means another subscriber is already the global default, which
        // is fine for a test: its output still goes somewhere the test author chose.
        let _already_installed = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_twice_is_harmless() {
        init_test_tracing();
        init_test_tracing();
        // The global dispatcher is now set, by this call or an earlier one.
        assert!(tracing_subscriber::fmt().try_init().is_err());
    }
}
