//! Exit with the parent: an opt-in for daemons started as child processes (by `tunectl local`
//! and `tunectl study --local`), so they do not outlive a parent killed with SIGKILL.
//!
//! Set `TUNEFLEET_EXIT_WITH_PARENT` in the daemon's environment: `1` watches the process that
//! is the parent at startup; any other pid watches that pid (which must be the parent at
//! startup, else the parent already died and the daemon stops at once); unset, empty or `0`
//! turns the watch off. The daemon then polls [`std::os::unix::process::parent_id`] every
//! [`POLL_INTERVAL`] and, when it changes (the kernel reparents an orphan to init or a
//! subreaper), shuts down as on SIGTERM. If the graceful shutdown takes longer than
//! [`EXIT_GRACE`], the process exits with status 1. No `prctl`, no unsafe code.
//!
//! The coordinator has the same module (`coordinator::parent`): the two daemons share no crate
//! (STYLE.md §1).
//!
//! ```
//! use std::collections::HashMap;
//! use agent::parent::{ParentWatch, EXIT_WITH_PARENT_ENV};
//! let env = HashMap::from([(EXIT_WITH_PARENT_ENV.to_string(), "1".to_string())]);
//! let watch = ParentWatch::from_env(&env).unwrap().expect("enabled");
//! assert_eq!(watch.parent_pid(), std::os::unix::process::parent_id());
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// The environment variable that turns the watch on.
pub const EXIT_WITH_PARENT_ENV: &str = "TUNEFLEET_EXIT_WITH_PARENT";

/// How often the parent pid is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long the graceful shutdown after the parent's death may take before the process exits.
pub const EXIT_GRACE: Duration = Duration::from_secs(10);

/// A parent process to outlive by no more than a poll interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParentWatch {
    parent_pid: u32,
}

impl ParentWatch {
    /// Watches `parent_pid`.
    pub fn new(parent_pid: u32) -> Self {
        Self { parent_pid }
    }

    /// The watch `TUNEFLEET_EXIT_WITH_PARENT` in `env` asks for, if any.
    ///
    /// # Errors
    /// A message naming the variable when its value is not a number.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Option<Self>, String> {
        let Some(value) = env.get(EXIT_WITH_PARENT_ENV).map(|v| v.trim()) else {
            return Ok(None);
        };
        match value {
            "" | "0" => Ok(None),
            "1" => Ok(Some(Self::new(std::os::unix::process::parent_id()))),
            pid => pid.parse().map(|pid| Some(Self::new(pid))).map_err(|_| {
                format!("{EXIT_WITH_PARENT_ENV} must be 0, 1 or the parent's pid, got '{value}'")
            }),
        }
    }

    /// The pid watched.
    pub fn parent_pid(&self) -> u32 {
        self.parent_pid
    }

    /// Whether the parent is still `parent_pid`.
    pub fn parent_alive(&self) -> bool {
        std::os::unix::process::parent_id() == self.parent_pid
    }

    /// Completes once the process's parent is no longer `parent_pid`.
    pub async fn parent_exited(self) {
        let mut ticks = tokio::time::interval(POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !self.parent_alive() {
                return;
            }
        }
    }
}

/// Completes when `shutdown` does or, with a `watch`, when the parent exits; in the second case
/// it also arms a timer that exits the process with status 1 after [`EXIT_GRACE`], so an
/// orphan whose drain hangs still goes away.
pub async fn shutdown_or_parent_exit(
    shutdown: impl Future<Output = ()>,
    watch: Option<ParentWatch>,
) {
    let Some(watch) = watch else {
        shutdown.await;
        return;
    };
    tokio::select! {
        () = shutdown => {}
        () = watch.parent_exited() => {
            tracing::warn!(parent_pid = watch.parent_pid(), "parent process exited, shutting down");
            tokio::spawn(async {
                tokio::time::sleep(EXIT_GRACE).await;
                eprintln!("error: graceful shutdown after the parent's exit took over {EXIT_GRACE:?}, exiting");
                std::process::exit(1);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: &str) -> HashMap<String, String> {
        HashMap::from([(EXIT_WITH_PARENT_ENV.to_string(), value.to_string())])
    }

    #[test]
    fn the_variable_turns_the_watch_on_and_off() {
        let parent = std::os::unix::process::parent_id();
        assert_eq!(ParentWatch::from_env(&HashMap::new()), Ok(None));
        assert_eq!(ParentWatch::from_env(&env("0")), Ok(None));
        assert_eq!(ParentWatch::from_env(&env("")), Ok(None));
        assert_eq!(
            ParentWatch::from_env(&env("1")),
            Ok(Some(ParentWatch::new(parent)))
        );
        assert_eq!(
            ParentWatch::from_env(&env(&parent.to_string())),
            Ok(Some(ParentWatch::new(parent)))
        );
        let message = ParentWatch::from_env(&env("yes")).expect_err("not a pid");
        assert!(message.contains(EXIT_WITH_PARENT_ENV), "{message}");
    }

    #[tokio::test]
    async fn a_watch_on_another_pid_fires_and_one_on_the_parent_does_not() {
        let parent = std::os::unix::process::parent_id();
        assert!(ParentWatch::new(parent).parent_alive());
        // Not our parent: as if the parent died and we were reparented.
        let gone = ParentWatch::new(parent.wrapping_add(1).max(2));
        tokio::time::timeout(Duration::from_secs(5), gone.parent_exited())
            .await
            .expect("fires within a poll interval");
        let alive = ParentWatch::new(parent);
        let waited = tokio::time::timeout(POLL_INTERVAL * 3, alive.parent_exited()).await;
        assert!(waited.is_err(), "fired while the parent is alive");
    }
}
