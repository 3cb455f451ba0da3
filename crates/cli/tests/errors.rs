//! Every failure a person is likely to hit gives one clear `error:` line on stderr and
//! a non-zero exit, never panic output.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;

use common::*;

#[test]
fn unreachable_s3_endpoint() {
    // Nothing listens on the endpoint; the open deadline keeps the test short.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec![
            "inspect",
            "collections",
            "--persist",
            "s3://strata-test/prefix",
        ],
        vec![
            "inspect",
            "shard",
            "--persist",
            "s3://strata-test/prefix",
            "s07070707-0707-0707-0707-070707070707",
        ],
        vec![
            "replica",
            "--listen",
            "127.0.0.1:0",
            "--persist",
            "s3://strata-test/prefix",
        ],
    ] {
        let out = run(strata()
            .args(&args)
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("STRATA_OPEN_TIMEOUT_SECS", "1"));
        assert_one_line_error(
            &out,
            &[
                "s3://strata-test/prefix",
                "did not answer within 1.0s",
                "AWS_ENDPOINT_URL",
            ],
        );
    }
}

#[test]
fn permission_denied_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores directory modes: run the binary as `nobody` then.
    let probe = locked.join("probe");
    let as_root = std::fs::create_dir(&probe).is_ok();
    if as_root {
        std::fs::remove_dir(&probe).unwrap();
    }
    let url = file_url(&locked.join("data"));
    let mut command = if as_root {
        // `nobody` may not be able to reach the build's target directory (CI keeps it
        // under root's 0700 home), so run a copy that lives in the world-readable
        // temporary directory.
        let copy = dir.path().join("strata");
        std::fs::copy(env!("CARGO_BIN_EXE_strata"), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut command = std::process::Command::new(&copy);
        command.env_remove("RUST_LOG").env("RUST_BACKTRACE", "0");
        command.current_dir(dir.path()).uid(65534).gid(65534);
        command
    } else {
        strata()
    };
    command.args(["replica", "--listen", "127.0.0.1:0", "--persist", &url]);
    let out = run(&mut command);
    assert_one_line_error(
        &out,
        &["cannot open persist location", &url, "ermission denied"],
    );
}

#[test]
fn port_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(strata().args([
        "replica",
        "--listen",
        &addr,
        "--persist",
        &file_url(dir.path()),
    ]));
    assert_one_line_error(&out, &[&format!("cannot listen on {addr}"), "in use"]);
}

#[test]
fn shard_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let shard = "s07070707-0707-0707-0707-070707070707";
    let out = run(strata().args([
        "inspect",
        "shard",
        "--persist",
        &file_url(dir.path()),
        shard,
    ]));
    assert_one_line_error(&out, &[&format!("shard {shard} does not exist")]);
}

#[test]
fn malformed_shard_id() {
    let dir = tempfile::tempdir().unwrap();
    for (text, reason) in [
        ("nope", "expected s prefix"),
        ("s1234", "expected a hyphenated uuid"),
        ("", "invalid shard id"),
    ] {
        let out =
            run(strata().args(["inspect", "shard", "--persist", &file_url(dir.path()), text]));
        assert_one_line_error(&out, &["invalid shard id", reason]);
    }
}

#[test]
fn persist_directory_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let url = file_url(&missing);
    let out = run(strata().args(["inspect", "collections", "--persist", &url]));
    assert_one_line_error(
        &out,
        &[&format!("no persist data at {url}"), "does not exist"],
    );
    assert!(
        !missing.exists(),
        "a read-only command created the directory"
    );
}

#[test]
fn location_without_a_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(strata().args(["inspect", "collections", "--persist", &file_url(dir.path())]));
    assert_one_line_error(&out, &["no durable catalog at", "no controller has run"]);
}

#[test]
fn malformed_location() {
    let out = run(strata().args(["inspect", "collections", "--persist", "ftp://x"]));
    assert_one_line_error(
        &out,
        &["invalid --persist", "unknown location scheme \"ftp\""],
    );
}

#[test]
fn non_loopback_listen_without_tls() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("0.0.0.0:{}", free_port());
    let out = run(strata().args([
        "replica",
        "--listen",
        &addr,
        "--persist",
        &file_url(dir.path()),
    ]));
    assert_one_line_error(
        &out,
        &[
            &format!("refusing to listen on {addr} without tls"),
            "--insecure",
        ],
    );
}

#[test]
fn demo_refuses_options_it_cannot_honour() {
    let out = run(strata().args(["demo", "--persist", "mem://demo", "--transport", "grpc"]));
    assert_one_line_error(
        &out,
        &["--transport grpc needs a persist location", "mem://demo"],
    );
}

/// A duration option's bad value is a usage error (exit 2) that names the option, the
/// value and what is wrong with it.
#[test]
fn bad_durations_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    for (args, needle) in [
        (
            vec!["demo", "--persist", "mem://demo", "--duration", "0"],
            "invalid value '0' for '--duration <DURATION>': \"0\" is zero",
        ),
        (
            vec!["demo", "--persist", "mem://demo", "--duration", "2d"],
            "\"2d\" is too long: at most 1day",
        ),
        (
            vec!["top", "--persist", &url, "--interval", "soon"],
            "invalid value 'soon' for '--interval <DURATION>': \"soon\" is not a duration such as 1s, 500ms or 1m30s",
        ),
        (
            vec!["top", "--persist", &url, "--interval", "50ms"],
            "\"50ms\" is too short: at least 100ms",
        ),
        (
            vec![
                "inspect",
                "collections",
                "--persist",
                &url,
                "--open-timeout",
                "0",
            ],
            "invalid value '0' for '--open-timeout <DURATION>'",
        ),
        (
            vec![
                "replica",
                "--listen",
                "127.0.0.1:0",
                "--persist",
                &url,
                "--shutdown-grace",
                "3 parsecs",
            ],
            "unknown time unit \"parsecs\"",
        ),
    ] {
        let out = run(strata().args(&args));
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(needle),
            "{args:?}: missing {needle:?}: {out:?}"
        );
    }
    let out = run(strata()
        .args(["inspect", "collections", "--persist", &url])
        .env("STRATA_OPEN_TIMEOUT_SECS", "soon"));
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("\"soon\" is not a duration"), "{out:?}");
}

#[test]
fn top_without_a_terminal_or_a_location() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    // Not a terminal (the test's pipes): one line that says what to use instead.
    let out = run(strata().args(["top", "--persist", &url]));
    assert_one_line_error(
        &out,
        &[
            "strata top needs a terminal",
            &format!("strata inspect collections --persist {url}"),
        ],
    );
    // A location that does not exist fails before the terminal is touched.
    let missing = file_url(&dir.path().join("missing"));
    let out = run(strata().args(["top", "--persist", &missing]));
    assert_one_line_error(
        &out,
        &[&format!("no persist data at {missing}"), "does not exist"],
    );
}

#[test]
fn tls_files_that_are_not_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not pem\n").unwrap();
    let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let wrong_key = dir.path().join("other-key.pem");
    std::fs::write(&cert, one.cert.pem()).unwrap();
    std::fs::write(&wrong_key, other.signing_key.serialize_pem()).unwrap();
    let missing = dir.path().join("missing.pem");
    let persist = file_url(dir.path());
    for (cert, key, needle) in [
        (&junk, &wrong_key, "holds no certificate"),
        (&cert, &junk, "holds no usable private key"),
        (&cert, &wrong_key, "does not fit certificate"),
        (&missing, &wrong_key, "cannot read tls certificate"),
    ] {
        let out = run(strata().args([
            "replica",
            "--listen",
            "127.0.0.1:0",
            "--persist",
            &persist,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ]));
        assert_one_line_error(&out, &[needle]);
    }
}

/// The S3 set-up mistakes an operator makes first, each named with its fix, against
/// the local S3 server `cargo xtask test` starts (the test returns early without it).
#[test]
fn s3_setup_mistakes_name_their_fix() {
    let (Ok(endpoint), Ok(bucket)) = (
        std::env::var("AWS_ENDPOINT_URL"),
        std::env::var("STRATA_S3_TEST_BUCKET"),
    ) else {
        eprintln!("s3_setup_mistakes_name_their_fix: no local S3 server");
        return;
    };
    let inspect = |url: &str| {
        let mut command = strata();
        command
            .args(["inspect", "collections", "--persist", url])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("STRATA_OPEN_TIMEOUT_SECS", "20");
        command
    };
    let url = format!("s3://{bucket}/errors");

    let no_http = run(inspect(&url)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing"));
    assert_one_line_error(
        &no_http,
        &[&format!(
            "the endpoint {endpoint} is plain http, which the S3 client refuses: set AWS_ALLOW_HTTP=true (or use https)"
        )],
    );

    let no_credentials = run(inspect(&url).env("AWS_ALLOW_HTTP", "true"));
    assert_one_line_error(
        &no_credentials,
        &["no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"],
    );

    let missing = format!("strata-missing-{}", std::process::id());
    let no_bucket = run(inspect(&format!("s3://{missing}/x"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing"));
    assert_one_line_error(
        &no_bucket,
        &[&format!(
            "bucket \"{missing}\" does not exist: create it, or name an existing bucket in the URL"
        )],
    );
    assert!(!no_bucket.stderr.contains("<?xml"), "{no_bucket:?}");
}

/// `mem://` is memory inside one process: commands that run in their own process say
/// so instead of reporting an empty location.
#[test]
fn memory_locations_are_refused_where_no_one_can_see_them() {
    let why = "mem://x is memory inside one process, and this command runs in a process of its own that cannot see it: use a directory (file:///path) or s3://bucket/prefix";
    for args in [
        vec!["inspect", "collections", "--persist", "mem://x"],
        vec![
            "inspect",
            "shard",
            "--persist",
            "mem://x",
            "s07070707-0707-0707-0707-070707070707",
        ],
        vec!["replica", "--listen", "127.0.0.1:0", "--persist", "mem://x"],
    ] {
        let out = run(strata().args(&args));
        assert_one_line_error(&out, &[why]);
    }
}

/// `file://./dir` and `file://dir` name a directory relative to the working directory
/// for every command, as a plain path does.
#[test]
fn relative_file_urls_work_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let name = dir.path().file_name().unwrap().to_str().unwrap().to_owned();
    let parent = dir.path().parent().unwrap();
    for form in [
        format!("file://./{name}"),
        format!("file://{name}"),
        name.clone(),
    ] {
        let out =
            run(strata()
                .current_dir(parent)
                .args(["inspect", "collections", "--persist", &form]));
        // The directory exists but holds no catalog: the error names the absolute URL.
        assert_one_line_error(
            &out,
            &[&format!("no durable catalog at {}", file_url(dir.path()))],
        );
    }
}

/// A failed metrics bind prints its cause once, with the fix.
#[test]
fn a_taken_metrics_port_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(strata().args([
        "demo",
        "--persist",
        "mem://metrics-taken",
        "--metrics-addr",
        &addr,
        "--duration",
        "1",
    ]));
    assert_one_line_error(
        &out,
        &[
            &format!("binding the metrics listener to {addr} failed"),
            "pass a free --metrics-addr, or leave it out",
        ],
    );
    let cause = "Address already in use";
    assert_eq!(out.stderr.matches(cause).count(), 1, "{out:?}");
}
