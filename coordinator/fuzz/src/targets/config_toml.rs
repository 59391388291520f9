//! `config_toml`: bytes → UTF-8 → the coordinator's config parser (`Config::from_toml_str`, the
//! file layer and every range check of `Config::load`) and the agent's
//! (`agent::config::from_toml_str`). Both must answer `Ok` or `Err`, never panic; an accepted
//! coordinator config must give service settings.
//!
//! The coordinator reads the file an `auth_token_file` names, so a fuzzed path could name a FIFO
//! (a hang) or `/dev/zero` (unbounded memory); the target points such a key at a token file of
//! its own and parses the document re-serialized, so the field's code still runs.

use std::sync::OnceLock;

use crate::Reached;

/// Runs one input.
pub fn run(data: &[u8]) -> Reached {
    let Ok(text) = std::str::from_utf8(data) else {
        return Reached::Rejected;
    };
    let agent_config = agent::config::from_toml_str(text);
    let safe = without_foreign_token_file(text);
    let coordinator_config =
        coordinator::config::Config::from_toml_str(safe.as_deref().unwrap_or(text));
    if let Ok(config) = &coordinator_config {
        let settings = config.settings();
        assert!(
            settings.heartbeat_interval < settings.lease_timeout,
            "accepted a heartbeat no shorter than the lease timeout: {text:?}"
        );
    }
    Reached::from_served(agent_config.is_ok() || coordinator_config.is_ok())
}

/// The document with every `auth_token_file` pointed at the target's own token file, when it has
/// one (any spelling the config crate folds to that key); `None` when it has none or is not TOML.
fn without_foreign_token_file(text: &str) -> Option<String> {
    let mut table: toml::Table = text.parse().ok()?;
    let keys: Vec<String> = table
        .keys()
        .filter(|k| k.eq_ignore_ascii_case("auth_token_file"))
        .cloned()
        .collect();
    if keys.is_empty() {
        return None;
    }
    for key in keys {
        if table.get(&key).is_some_and(toml::Value::is_str) {
            table.insert(key, toml::Value::String(token_file().to_owned()));
        }
    }
    toml::to_string(&table).ok()
}

/// A token file of the target's own, written once.
fn token_file() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        let path = dir.join("token");
        std::fs::write(&path, "fuzz-token\n").expect("writes the token file");
        path.display().to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_token_files_are_replaced() {
        assert_eq!(without_foreign_token_file("version = 1\n"), None);
        let replaced = without_foreign_token_file("version = 1\nAUTH_TOKEN_FILE = \"/dev/zero\"\n")
            .expect("has the key");
        assert!(
            !replaced.contains("/dev/zero") && replaced.contains(token_file()),
            "{replaced}"
        );
        run(b"version = 1\nauth_token_file = \"/dev/zero\"\n");
    }
}
