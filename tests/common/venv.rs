//! Python virtualenvs the tests run real tools from (a Wyoming server, an OpenAPI validator),
//! made on first use under `~/.cache/mediagate` with pip from PyPI: nothing can stand in for
//! the real tool, so without Python a test fails and says what to install.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `~/.cache/mediagate/<name>` with the pinned `package` installed, made unless a finished one
/// is there; one process at a time (a lock file beside it). Blocking: minutes at worst.
pub fn with_package(name: &str, package: &str) -> PathBuf {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is not set"));
    let venv = home.join(".cache/mediagate").join(name);
    // Written once pip has finished: a venv without it is an interrupted install.
    let installed = venv.join(format!(".{package}"));
    if installed.is_file() {
        return venv;
    }
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(venv.with_extension("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if installed.is_file() {
        return venv;
    }
    eprintln!("making {} with {package} (once)", venv.display());
    run_bounded(
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv),
        Duration::from_secs(120),
        "python3 -m venv (on Debian: `apt-get install python3-venv`)",
    );
    run_bounded(
        std::process::Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            package,
        ]),
        Duration::from_secs(900),
        &format!("pip install {package} (it needs PyPI)"),
    );
    std::fs::write(&installed, b"").unwrap();
    venv
}

/// Runs `command` to its end within `limit`; a failure panics with its output and `what`.
pub fn run_bounded(command: &mut std::process::Command, limit: Duration, what: &str) {
    let output = tempfile::tempfile().unwrap();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: not done within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        use std::io::{Read, Seek};
        let (mut output, mut text) = (output, String::new());
        let _ = output
            .rewind()
            .and_then(|()| output.read_to_string(&mut text));
        panic!("{what} failed ({status}):\n{text}");
    }
}
