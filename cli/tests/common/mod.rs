//! Helpers shared by the CLI tests (each test binary includes this module).

use std::process::Command;

/// Runs the `hearth` binary built for these tests: (success, stdout, stderr).
pub fn hearth(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .output()
        .expect("run hearth");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
