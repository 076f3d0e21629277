//! Helpers shared by the CLI tests (each test binary includes this module).

use std::path::Path;
use std::process::Command;

/// Runs the `hearth` binary built for these tests in `dir`: (success, stdout, stderr).
pub fn hearth_in(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run hearth");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the `hearth` binary in the current directory.
#[allow(dead_code)] // Test binaries that always pass a directory do not use it.
pub fn hearth(args: &[&str]) -> (bool, String, String) {
    hearth_in(Path::new("."), args)
}
