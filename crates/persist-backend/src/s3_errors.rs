//! What an S3 failure at open means for an operator, in one line with the fix.
//!
//! object_store reports the common set-up mistakes in the words of the layer that
//! failed: an HTTP client "builder error" for an `http://` endpoint without
//! `AWS_ALLOW_HTTP`, a 403 from the instance metadata address when no credentials are
//! set, the raw XML of `NoSuchBucket`. [`diagnose`] is a pure function from the error
//! text and the environment that matters to the sentence an operator needs.

/// The settings [`diagnose`] looks at, read from the environment by [`S3Env::current`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct S3Env {
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`).
    pub(crate) endpoint: Option<String>,
    /// Whether `AWS_ALLOW_HTTP` is `true`.
    pub(crate) allow_http: bool,
}

impl S3Env {
    pub(crate) fn current() -> S3Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Env {
            endpoint: var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT")),
            allow_http: var("AWS_ALLOW_HTTP").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }
}

/// The cause and fix of an S3 open failure, or `None` to keep the error as it is.
pub(crate) fn diagnose(bucket: &str, error: &str, env: &S3Env) -> Option<String> {
    let http_endpoint = env.endpoint.as_deref().filter(|e| e.starts_with("http://"));
    if let Some(endpoint) = http_endpoint
        && !env.allow_http
        && error.contains("builder error")
    {
        return Some(format!(
            "the endpoint {endpoint} is plain http, which the S3 client refuses: set AWS_ALLOW_HTTP=true (or use https)"
        ));
    }
    if error.contains("169.254.169.254") || error.contains("instance metadata") {
        return Some(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); \
             without them the client asked the EC2 instance metadata service, which is not available here"
                .to_owned(),
        );
    }
    if error.contains("NoSuchBucket") {
        return Some(format!(
            "bucket {bucket:?} does not exist: create it, or name an existing bucket in the URL"
        ));
    }
    if error.contains("InvalidAccessKeyId") || error.contains("SignatureDoesNotMatch") {
        return Some(
            "the AWS credentials were refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .to_owned(),
        );
    }
    if error.contains("AccessDenied") || error.contains("403 Forbidden") {
        return Some(format!(
            "access to bucket {bucket:?} was denied: the credentials need s3:ListBucket (and s3:GetObject to read, s3:PutObject to write)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(endpoint: Option<&str>, allow_http: bool) -> S3Env {
        S3Env {
            endpoint: endpoint.map(str::to_owned),
            allow_http,
        }
    }

    #[test]
    fn each_known_failure_gets_its_cause_and_fix() {
        let http = Some("http://127.0.0.1:5556");
        let table: [(&str, S3Env, Option<&str>); 8] = [
            (
                "Error performing GET http://127.0.0.1:5556/b1?list-type=2 in 16µs - HTTP error: builder error",
                env(http, false),
                Some(
                    "the endpoint http://127.0.0.1:5556 is plain http, which the S3 client refuses: set AWS_ALLOW_HTTP=true (or use https)",
                ),
            ),
            // With AWS_ALLOW_HTTP set, a builder error is something else: keep it.
            ("HTTP error: builder error", env(http, true), None),
            (
                "Error performing PUT http://169.254.169.254/latest/api/token in 2ms - Server returned non-2xx status code: 403 Forbidden",
                env(http, true),
                Some(
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); without them the client asked the EC2 instance metadata service, which is not available here",
                ),
            ),
            (
                "404 Not Found: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>",
                env(None, false),
                Some(
                    "bucket \"b\" does not exist: create it, or name an existing bucket in the URL",
                ),
            ),
            (
                "<Error><Code>InvalidAccessKeyId</Code></Error>",
                env(None, false),
                Some(
                    "the AWS credentials were refused: check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                ),
            ),
            (
                "403 Forbidden: <Error><Code>AccessDenied</Code></Error>",
                env(None, false),
                Some(
                    "access to bucket \"b\" was denied: the credentials need s3:ListBucket (and s3:GetObject to read, s3:PutObject to write)",
                ),
            ),
            ("connection refused", env(http, true), None),
            ("", env(None, false), None),
        ];
        for (error, env, want) in table {
            assert_eq!(diagnose("b", error, &env).as_deref(), want, "{error}");
        }
    }
}
