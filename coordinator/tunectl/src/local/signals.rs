//! The termination signals `tunectl local` and `tunectl study` stop on: SIGTERM (what
//! `timeout`, systemd and CI send), SIGHUP (a closed terminal) and SIGINT (Ctrl-C).
//!
//! [`Termination::listen`] installs the handlers before the cluster starts, so a signal that
//! arrives while the children start up is queued instead of killing `tunectl` and orphaning
//! them. The command then stops its experiments and children and fails with [`Interrupted`],
//! which `main` turns into the shell's convention for a death by signal: 128 + the signal's
//! number (129, 130, 143).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut termination = tunectl::local::signals::Termination::listen()?;
//! let signal = termination.recv().await;
//! assert!(signal.exit_code() > 128);
//! # Ok(()) }
//! ```

use std::fmt;

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// A termination signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TermSignal {
    /// SIGHUP (1).
    Hangup,
    /// SIGINT (2).
    Interrupt,
    /// SIGTERM (15).
    Terminate,
}

impl TermSignal {
    /// The signal's number on Linux.
    pub fn number(self) -> u8 {
        match self {
            TermSignal::Hangup => 1,
            TermSignal::Interrupt => 2,
            TermSignal::Terminate => 15,
        }
    }

    /// The exit code of a process that stops because of this signal: 128 + its number.
    pub fn exit_code(self) -> u8 {
        128 + self.number()
    }

    /// `SIGHUP`, `SIGINT` or `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            TermSignal::Hangup => "SIGHUP",
            TermSignal::Interrupt => "SIGINT",
            TermSignal::Terminate => "SIGTERM",
        }
    }
}

/// The handlers of the three termination signals.
pub struct Termination {
    hangup: Signal,
    interrupt: Signal,
    terminate: Signal,
}

impl Termination {
    /// Installs the handlers; from now on these signals no longer kill the process.
    ///
    /// # Errors
    /// When called outside a tokio runtime or a handler cannot be installed.
    pub fn listen() -> anyhow::Result<Self> {
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("failed to listen for {name}"))
        };
        Ok(Self {
            hangup: install(SignalKind::hangup(), "SIGHUP")?,
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// Waits for the next termination signal.
    pub async fn recv(&mut self) -> TermSignal {
        tokio::select! {
            _ = self.hangup.recv() => TermSignal::Hangup,
            _ = self.interrupt.recv() => TermSignal::Interrupt,
            _ = self.terminate.recv() => TermSignal::Terminate,
        }
    }
}

/// The error of a command stopped by a signal; `main` exits with [`Interrupted::exit_code`].
#[derive(Debug)]
pub struct Interrupted {
    /// The signal received.
    pub signal: TermSignal,
    /// What was done about it (e.g. `experiment X stopped`).
    pub outcome: String,
}

impl Interrupted {
    /// An interruption by `signal`, with what was done about it.
    pub fn new(signal: TermSignal, outcome: impl Into<String>) -> Self {
        Self {
            signal,
            outcome: outcome.into(),
        }
    }

    /// 128 + the signal's number.
    pub fn exit_code(&self) -> u8 {
        self.signal.exit_code()
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}: {}", self.signal.name(), self.outcome)
    }
}

impl std::error::Error for Interrupted {}

/// The exit code an error asks for: 128 + the signal's number when a signal caused it.
pub fn exit_code_of(error: &anyhow::Error) -> Option<u8> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Interrupted>())
        .map(Interrupted::exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(TermSignal::Hangup.exit_code(), 129);
        assert_eq!(TermSignal::Interrupt.exit_code(), 130);
        assert_eq!(TermSignal::Terminate.exit_code(), 143);
    }

    #[test]
    fn the_exit_code_is_found_under_added_context() {
        let error = anyhow::Error::new(Interrupted::new(TermSignal::Terminate, "stopped"))
            .context("tunectl local failed");
        assert_eq!(exit_code_of(&error), Some(143));
        assert_eq!(exit_code_of(&anyhow::anyhow!("other")), None);
        let text = Interrupted::new(TermSignal::Interrupt, "experiment e1 stopped").to_string();
        assert_eq!(text, "interrupted by SIGINT: experiment e1 stopped");
    }
}
