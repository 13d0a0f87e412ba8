//! The binary's `--health-check` mode, which container health checks run.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{Server, TestDatabase, eventually, free_port};

fn health_check(port: u16) -> bool {
    Command::new(env!("CARGO_BIN_EXE_user-info"))
        .arg("--health-check")
        .env("USER_INFO_PORT", port.to_string())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[tokio::test]
async fn health_check_mode_succeeds_against_a_running_server_and_fails_without_one() {
    let db = TestDatabase::create();
    let port = free_port();
    assert!(!health_check(port), "nothing listens yet");

    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_user-info"))
            .env("USER_INFO_HOST", "127.0.0.1")
            .env("USER_INFO_PORT", port.to_string())
            .env("DATABASE_URL", &db.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let healthy = eventually(Duration::from_secs(20), || async { health_check(port) }).await;
    assert!(healthy);

    let _ = server.0.kill();
    let _ = server.0.wait();
    assert!(!health_check(port));
}
