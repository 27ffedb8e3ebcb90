//! The servers under test as child processes (rota-server, nginx), stopped on every way
//! out of the bench, their CPU time, and what the machine is.
// libc calls without safe wrappers (prctl, kill, sysconf, clock_gettime), each with its
// safety argument.
#![allow(unsafe_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A child process that is stopped (SIGTERM, then SIGKILL after 5 s) when dropped, so an
/// error or a panic in the bench leaves no server behind; and that gets SIGTERM from the
/// kernel if the bench itself dies (`PR_SET_PDEATHSIG`).
pub struct Child {
    pub name: &'static str,
    child: std::process::Child,
    log: PathBuf,
}

impl Child {
    /// Spawns `cmd` with stdout and stderr to `log`. Call it from the main thread: the
    /// death signal follows the thread that spawned the child.
    pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Result<Child> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        Ok(Child {
            name,
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error (with the end of its log) if the child has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); the end of its log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound then released: another process could take it in between,
/// which the readiness check then reports).
pub fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?)
}

/// Waits until `ready` succeeds, failing early if the child exits.
pub async fn wait_ready<F, Fut>(child: &mut Child, timeout: Duration, mut ready: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        child.check_running()?;
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer within {timeout:?}; the end of its log:\n{}",
                child.name,
                child.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// nginx serving `www` on `addr`, in the foreground, with a config written to `dir`.
pub fn start_nginx(
    nginx: &Path,
    dir: &Path,
    www: &Path,
    addr: SocketAddr,
    workers: usize,
) -> Result<Child> {
    // Workers run as an unprivileged user when the master is root: they must be able to
    // reach the files.
    use std::os::unix::fs::PermissionsExt;
    for path in [dir, www] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    let d = dir.display();
    let config = format!(
        "daemon off;
worker_processes {workers};
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    default_type application/octet-stream;
    server {{
        listen {addr};
        root {www};
    }}
}}
",
        www = www.display()
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config)?;
    let check = Command::new(nginx)
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg("stderr")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (install it: apt-get install -y nginx)",
                nginx.display()
            )
        })?;
    if !check.status.success() {
        bail!(
            "nginx refuses the generated config {}:\n{}",
            conf.display(),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    Child::spawn(
        "nginx",
        Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg("stderr"),
        &dir.join("nginx.log"),
    )
}

/// CPU time (user + system) of a process and, with `children`, of its direct children
/// (nginx's workers), in seconds.
pub fn cpu_seconds(pid: u32, children: bool) -> f64 {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = stat_ticks(pid).map(|(t, _)| t).unwrap_or(0);
    let entries = if children {
        std::fs::read_dir("/proc").ok()
    } else {
        None
    };
    for entry in entries.into_iter().flatten().flatten() {
        let Some(other) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        match stat_ticks(other) {
            Some((t, ppid)) if ppid == pid => total += t,
            _ => {}
        }
    }
    total as f64 / ticks
}

/// (utime + stime, ppid) from /proc/PID/stat.
fn stat_ticks(pid: u32) -> Option<(u64, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime, ppid))
}

/// CPU time all processes on the machine have used since boot (user, nice, system, irq,
/// softirq, steal), in seconds.
pub fn machine_busy_seconds() -> f64 {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    busy as f64 / ticks
}

/// The CPU time of the calling thread, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec that we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The first line a command prints (stdout, else stderr), or "unknown".
pub fn command_line(program: &Path, args: &[&str], cwd: Option<&Path>) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    match cmd.output() {
        Ok(out) => {
            let text = if out.stdout.is_empty() {
                out.stderr
            } else {
                out.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("unknown")
                .trim()
                .to_string()
        }
        Err(_) => "unknown".into(),
    }
}
