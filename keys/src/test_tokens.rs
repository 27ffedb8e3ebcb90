//! Real PKCS#11 tokens for tests (feature `test-tokens`): SoftHSM2 in a temporary
//! directory and a software TPM 2.0 (swtpm) with tpm2-pkcs11 on top.
//!
//! Nothing here is a stand-in: the tests load the same modules an HSM or a TPM is used
//! through. The packages come from the distribution (`scripts/test.sh` installs them);
//! a missing one fails the test with the command that installs it, never skips it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The user PIN every test token has.
pub const USER_PIN: &str = "rota-user-1234";
/// The security officer's PIN every test token has.
pub const SO_PIN: &str = "rota-so-5678";

/// The first existing file among `candidates`, or a panic naming the package.
fn find(candidates: &[&str], what: &str, package: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{what} is not installed: apt-get install -y {package} (scripts/test.sh does)")
        })
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// SoftHSM2's PKCS#11 module.
pub fn softhsm_module() -> PathBuf {
    find(
        &[
            "/usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/local/lib/softhsm/libsofthsm2.so",
        ],
        "SoftHSM2",
        "softhsm2",
    )
}

/// A SoftHSM2 installation of its own: a token directory and the `softhsm2.conf`
/// pointing at it. Tokens made here are seen by processes given [`SoftHsm::env`].
pub struct SoftHsm {
    dir: tempfile::TempDir,
    module: PathBuf,
}

impl SoftHsm {
    /// An empty SoftHSM2 in a new temporary directory, for child processes.
    pub fn new() -> Self {
        let module = softhsm_module();
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::create_dir(dir.path().join("tokens")).expect("token directory");
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .expect("softhsm2.conf");
        std::fs::write(dir.path().join("pin"), USER_PIN).expect("PIN file");
        std::fs::write(dir.path().join("wrong-pin"), "not-the-pin").expect("PIN file");
        Self { dir, module }
    }

    /// The SoftHSM2 this process loads (SoftHSM2 reads `SOFTHSM2_CONF` once, when the
    /// module is initialised), with the token `rota-test` in it. Tests in one process
    /// share it and use their own object labels.
    pub fn in_process() -> &'static SoftHsm {
        static SHARED: LazyLock<SoftHsm> = LazyLock::new(|| {
            let hsm = SoftHsm::new();
            hsm.init_token("rota-test");
            hsm.init_token("rota-pin-test");
            // SAFETY: set once, inside this LazyLock, before this process loads the
            // module (every in-process use goes through here first); Rust's own
            // environment access is locked, and no C code of this process reads
            // SOFTHSM2_CONF before the module does.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var("SOFTHSM2_CONF", hsm.conf());
            }
            hsm
        });
        &SHARED
    }

    /// `softhsm2.conf`.
    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The module path.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// A file holding [`USER_PIN`].
    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// A file holding a wrong PIN.
    pub fn wrong_pin_file(&self) -> PathBuf {
        self.dir.path().join("wrong-pin")
    }

    /// The environment a child process needs to see these tokens.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![("SOFTHSM2_CONF", self.conf())]
    }

    /// Initialises a new token labelled `label` with [`USER_PIN`] and [`SO_PIN`].
    pub fn init_token(&self, label: &str) {
        run(Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.conf())
            .args(["--init-token", "--free", "--label", label])
            .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
            .stdout(Stdio::null()));
    }

    /// The URI of key `object` in token `token`, with the module and the PIN file.
    pub fn uri(&self, token: &str, object: &str) -> String {
        format!(
            "pkcs11:token={token};object={object}?module-path={}&pin-source=file:{}",
            self.module.display(),
            self.pin_file().display()
        )
    }
}

impl Default for SoftHsm {
    fn default() -> Self {
        Self::new()
    }
}

/// tpm2-pkcs11's PKCS#11 module.
pub fn tpm2_pkcs11_module() -> PathBuf {
    find(
        &[
            "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so",
            "/usr/lib/aarch64-linux-gnu/pkcs11/libtpm2_pkcs11.so",
            "/usr/lib/pkcs11/libtpm2_pkcs11.so",
            "/usr/local/lib/pkcs11/libtpm2_pkcs11.so",
        ],
        "tpm2-pkcs11",
        "libtpm2-pkcs11-1",
    )
}

/// A software TPM 2.0 (swtpm) on loopback, with a tpm2-pkcs11 store and one token,
/// `device`, initialised through PKCS#11 (C_InitToken, C_InitPIN). Stopped on drop.
pub struct Swtpm {
    dir: tempfile::TempDir,
    process: Child,
    port: u16,
    module: PathBuf,
}

impl Swtpm {
    /// Starts swtpm and makes the token `device`.
    pub fn start() -> Self {
        let module = tpm2_pkcs11_module();
        let dir = tempfile::tempdir().expect("temporary directory");
        for sub in ["state", "store"] {
            std::fs::create_dir(dir.path().join(sub)).expect("directory");
        }
        std::fs::write(dir.path().join("pin"), USER_PIN).expect("PIN file");
        std::fs::write(dir.path().join("wrong-pin"), "not-the-pin").expect("PIN file");
        let deadline = Instant::now() + Duration::from_secs(20);
        let (process, port) = loop {
            // A free port for the server and the next for control: tpm2-tss's swtpm
            // TCTI reaches the control channel at port + 1. swtpm binds them itself
            // (exits if either is taken, and this loop tries again).
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            if port == u16::MAX {
                continue;
            }
            let ctrl = port + 1;
            let mut process = Command::new("swtpm")
                .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
                .arg("--tpmstate")
                .arg(format!("dir={}", dir.path().join("state").display()))
                .args([
                    "--server",
                    &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                ])
                .args([
                    "--ctrl",
                    &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start swtpm ({e}): apt-get install -y swtpm swtpm-tools")
                });
            let up = loop {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if process.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if up {
                break (process, port);
            }
            let _ = process.kill();
            let _ = process.wait();
            assert!(Instant::now() < deadline, "swtpm did not start");
        };
        let tpm = Self {
            dir,
            process,
            port,
            module,
        };
        run(tpm
            .pkcs11_tool(&["--slot-index", "0", "--init-token", "--label", "device"])
            .args(["--so-pin", SO_PIN]));
        run(tpm
            .pkcs11_tool(&["--token-label", "device", "--login", "--login-type", "so"])
            .args(["--so-pin", SO_PIN, "--init-pin", "--pin", USER_PIN]));
        tpm
    }

    fn pkcs11_tool(&self, args: &[&str]) -> Command {
        let mut command = Command::new("pkcs11-tool");
        command
            .envs(self.env())
            .arg("--module")
            .arg(&self.module)
            .args(args);
        command
    }

    /// The environment a process needs to reach this TPM through tpm2-pkcs11.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            (
                "TPM2_PKCS11_TCTI",
                format!("swtpm:host=127.0.0.1,port={}", self.port).into(),
            ),
            ("TPM2_PKCS11_STORE", self.dir.path().join("store")),
            // tpm2-pkcs11 warns on stderr about its fresh store otherwise.
            ("TPM2_PKCS11_LOG_LEVEL", "0".into()),
        ]
    }

    /// A file holding [`USER_PIN`].
    pub fn pin_file(&self) -> PathBuf {
        self.dir.path().join("pin")
    }

    /// A file holding a wrong PIN.
    pub fn wrong_pin_file(&self) -> PathBuf {
        self.dir.path().join("wrong-pin")
    }

    /// The URI of key `object` in the token `device`.
    pub fn uri(&self, object: &str) -> String {
        self.uri_with_pin(object, &self.pin_file())
    }

    /// The URI of key `object` with the PIN read from `pin_file`.
    pub fn uri_with_pin(&self, object: &str, pin_file: &Path) -> String {
        format!(
            "pkcs11:token=device;object={object}?module-path={}&pin-source=file:{}",
            self.module.display(),
            pin_file.display()
        )
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
