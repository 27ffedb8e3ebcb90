//! What the `rota` binary's tests share: running it as a user does, and the checks on what
//! it printed.

#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

/// How one run of `rota` ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `rota` with `args` in `dir`, without ROTA_SERVER or ROTA_TOKEN from outside.
pub fn rota(dir: &Path, args: &[&str]) -> Run {
    rota_env(dir, args, &[])
}

/// `rota` as [`rota`] runs it, with more environment (a SoftHSM2's or a TPM's).
pub fn rota_env(dir: &Path, args: &[&str], env: &[(&'static str, std::path::PathBuf)]) -> Run {
    let output = assert_cmd::cargo::cargo_bin_cmd!("rota")
        .current_dir(dir)
        .env_remove("ROTA_SERVER")
        .env_remove("ROTA_TOKEN")
        .envs(env.iter().cloned())
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code().expect("rota was killed by a signal"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Exit 1 with exactly one line on stderr, `error: …` containing `needle`, and no panic.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Self {
        assert_eq!(
            self.code, 1,
            "expected exit 1\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.starts_with("error: ") && self.stderr.lines().count() == 1,
            "expected one `error: ` line, got: {:?}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in {:?}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// `needle` is somewhere in stdout.
    #[track_caller]
    pub fn has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "expected {needle:?} in:\n{}",
            self.stdout
        );
        self
    }

    /// Stdout, parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap()
    }
}

/// The permission bits of `path`.
#[cfg(unix)]
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
