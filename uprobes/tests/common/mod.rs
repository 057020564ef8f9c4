//! What the kernel-level integration tests share: prerequisite checks.

use std::process::{Command, Stdio};

/// True when the prerequisite holds; otherwise a skip line (a panic in CI).
pub fn require(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("prerequisite missing in CI: {what}");
    }
    println!("SKIPPED: prerequisite missing: {what}");
    false
}

/// Whether `cmd arg` runs and succeeds.
pub fn runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}
