//! `--health-check`: the binary probes its own `/health` and exits 0 or 1, so a
//! container health check needs no curl or shell in the image.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

/// GETs `http://127.0.0.1:<port>/health`; success is a 200 within two seconds.
pub fn health_check(port: u16) -> ExitCode {
    match get_status(port, "/health") {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("health check: /health answered {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("health check: {error}");
            ExitCode::FAILURE
        }
    }
}

fn get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let timeout = Duration::from_secs(2);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let line = String::from_utf8_lossy(&head);
    line.get(9..12)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {line:?}")))
}

/// Whether the process was started as `<binary> --health-check`.
pub fn requested() -> bool {
    std::env::args()
        .nth(1)
        .is_some_and(|arg| arg == "--health-check")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_fails_the_check() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(health_check(port), ExitCode::FAILURE);
    }
}
