//! The binary's `--health-check` mode, which container health checks run.

use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::helpers::{Process, binary, free_port, spawn};

/// Runs `profile-enricher --health-check` against `port` and returns whether it
/// exited 0. It must exit by itself - it never starts a server - and, as it
/// installs no log subscriber, print nothing even at `info`.
fn health_check(port: u16) -> bool {
    let mut command = binary(port);
    command
        .arg("--health-check")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped());
    let mut probe = spawn(command, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = probe.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "--health-check did not exit");
        sleep(Duration::from_millis(20));
    };
    let mut output = String::new();
    std::io::Read::read_to_string(&mut probe.child.stdout.take().unwrap(), &mut output).unwrap();
    assert_eq!(output, "", "--health-check logged");
    status.success()
}

#[test]
fn health_check_mode_succeeds_against_a_running_server_and_fails_without_one() {
    let port = free_port();
    assert!(!health_check(port), "nothing listens yet");

    let mut server: Process = spawn(binary(port), port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !health_check(port) {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!("profile-enricher exited early: {status}");
        }
        assert!(Instant::now() < deadline, "the health check never passed");
        sleep(Duration::from_millis(50));
    }

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(!health_check(port), "the server is gone");
}
