//! The runtime every target shares, and the timeout that turns a hang into a crash.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tonic::{Code, Status};

/// The longest status message a refusal may carry (limits.rs echoes at most 64 characters of
/// what it refuses; a long echo once overflowed the gRPC header).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// The runtime, built once: two workers, so a call that spins on one leaves the other (and the
/// timer) to notice.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the fuzz runtime builds")
    })
}

/// How long one call may take before it counts as a hang: 1 s, or `FUZZ_CALL_TIMEOUT_MS`.
pub fn call_timeout() -> Duration {
    static TIMEOUT: OnceLock<Duration> = OnceLock::new();
    *TIMEOUT.get_or_init(|| {
        let millis = std::env::var("FUZZ_CALL_TIMEOUT_MS")
            .ok()
            .and_then(|raw| raw.parse().ok())
            .unwrap_or(1000);
        Duration::from_millis(millis)
    })
}

/// Runs `call` on the runtime and returns its output, or panics (a hang) when it takes longer
/// than [`call_timeout`]. `what` describes the call and its input for the report. A panic in
/// the call is passed on.
pub fn within<F>(what: &dyn Fn() -> String, call: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    within_for(call_timeout(), what, call)
}

/// [`within`] with a chosen time limit.
pub fn within_for<F>(limit: Duration, what: &dyn Fn() -> String, call: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = runtime().spawn(call);
    let joined = runtime().block_on(async move { tokio::time::timeout(limit, task).await });
    match joined {
        Ok(Ok(output)) => output,
        Ok(Err(error)) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Ok(Err(error)) => panic!("{} failed: {error}", what()),
        Err(_) => panic!("hang: {} did not answer within {limit:?}", what()),
    }
}

/// Checks a refusal: never `INTERNAL` or `UNKNOWN` (a scratch store does not fail, so those mean
/// a bug), and a short message.
pub fn check_status(what: &dyn Fn() -> String, status: &Status) {
    assert!(
        !matches!(status.code(), Code::Internal | Code::Unknown),
        "{} answered {:?}: {}",
        what(),
        status.code(),
        status.message()
    );
    assert!(
        status.message().len() <= MAX_STATUS_MESSAGE_BYTES,
        "{} answered a {}-byte message: {}...",
        what(),
        status.message().len(),
        status.message().chars().take(200).collect::<String>()
    );
}

/// The answer of a gRPC call: the message, or `None` after [`check_status`] on a refusal.
pub fn answer<T>(
    what: &dyn Fn() -> String,
    result: Result<tonic::Response<T>, Status>,
) -> Option<T> {
    match result {
        Ok(response) => Some(response.into_inner()),
        Err(status) => {
            check_status(what, &status);
            None
        }
    }
}

/// At most `max` bytes of `data` as escaped text, for reports.
pub fn describe(data: &[u8], max: usize) -> String {
    let shown = &data[..data.len().min(max)];
    let suffix = if data.len() > max { "..." } else { "" };
    format!(
        "{:?}{suffix} ({} bytes)",
        String::from_utf8_lossy(shown),
        data.len()
    )
}

/// Calls one method of a shared tonic adapter (an `Arc`) within [`call_timeout`] and checks a
/// refusal with [`answer`]: `rpc!(what, adapter, method, request)` is `Option<response>`. The
/// service trait must be in scope.
#[macro_export]
macro_rules! rpc {
    ($what:expr, $adapter:expr, $method:ident, $request:expr) => {{
        let adapter = ::std::sync::Arc::clone(&$adapter);
        let request = $request;
        let result = $crate::harness::within($what, async move {
            adapter.$method(::tonic::Request::new(request)).await
        });
        $crate::harness::answer($what, result)
    }};
}

/// Counts how far inputs get and, when `FUZZ_TALLY` is set, prints the counts every 2^16
/// inputs (on stderr, beside libFuzzer's status lines), to show how many inputs reach the service.
pub fn tally(reached: crate::Reached) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let slot = match reached {
        crate::Reached::Rejected => 0,
        crate::Reached::Refused => 1,
        crate::Reached::Served => 2,
    };
    COUNTS[slot].fetch_add(1, Ordering::Relaxed);
    let total: u64 = COUNTS.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    if total.is_multiple_of(1 << 16)
        && *ENABLED.get_or_init(|| std::env::var_os("FUZZ_TALLY").is_some())
    {
        let [rejected, refused, served] = COUNTS.each_ref().map(|c| c.load(Ordering::Relaxed));
        eprintln!("tally: {total} inputs: {rejected} rejected, {refused} refused, {served} served");
    }
}
