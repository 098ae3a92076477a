//! Overload, made on purpose: busy processes pinned to one CPU with `taskset` (util-linux),
//! and a child moved onto that CPU (`taskset -a -p`). The tool is run as a command, since
//! the runtime crates include no `libc`; a test asks [`missing_tools`] first and skips,
//! saying why, when it is absent.

use std::process::{Command, Stdio};

use super::proc::Proc;

/// Why the overload tool cannot be used here, or `None` when `taskset` runs.
pub fn missing_tools() -> Option<String> {
    let runs = Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    (!runs).then(|| "`taskset --version` does not run (util-linux missing?)".to_string())
}

/// The CPUs this process may run on (`Cpus_allowed_list` in `/proc/self/status`, such as
/// `0-3,6`), in increasing order; empty when it cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(from), Ok(to)) = (from.trim().parse::<usize>(), to.trim().parse::<usize>()) {
            cpus.extend(from..=to);
        }
    }
    cpus
}

/// A process that keeps `cpu` busy (a shell loop, pinned with `taskset -c`) until dropped.
pub fn busy_process(cpu: usize) -> Proc {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", &cpu.to_string(), "sh", "-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Proc::spawn(format!("busy loop on cpu {cpu}"), cmd)
}

/// Moves every thread of process `pid` to `cpu` (`taskset -a -p -c`). Threads it starts
/// later inherit the CPU of the thread that starts them.
///
/// # Panics
/// When `taskset` fails.
pub fn pin_process(pid: u32, cpu: usize) {
    run(
        "taskset",
        &["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()],
    );
}

fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
