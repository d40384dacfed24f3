//! `castellan-healthcheck`: a shell-free health probe for Docker's HEALTHCHECK
//! and Compose. Kubernetes does not use it: its probes speak gRPC health to
//! port 50051 natively.
//!
//! The runtime image has no shell, curl or wget, so Docker cannot probe the
//! server with them. This program GETs `http://127.0.0.1:<port>/readyz` (the
//! port of `CASTELLAN_HTTP_ADDR`, as the server reads it; default 8080) and
//! exits 0 on `200`, 1 otherwise. An optional argument replaces the path
//! (`castellan-healthcheck /healthz` for liveness only).
//!
//! std only: deploy/Dockerfile builds it with plain `rustc`, no Cargo, no
//! crates. To try it here:
//! `rustc --edition 2021 -O deploy/healthcheck.rs -o /tmp/castellan-healthcheck`.

use std::{
    env,
    io::{Read, Write},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    process::ExitCode,
    time::Duration,
};

const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let path = env::args().nth(1).unwrap_or_else(|| "/readyz".to_owned());
    match target().and_then(|addr| probe(addr, &path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("castellan-healthcheck: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The server's HTTP address; a wildcard listen address is probed on loopback.
fn target() -> Result<SocketAddr, String> {
    let configured = env::var("CASTELLAN_HTTP_ADDR").unwrap_or_else(|_| "0.0.0.0:8080".to_owned());
    let mut addr: SocketAddr = configured
        .parse()
        .map_err(|e| format!("CASTELLAN_HTTP_ADDR={configured:?}: {e}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

fn probe(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: castellan-healthcheck\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(4096)
        .read_to_end(&mut response)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!("GET {path} on {addr} answered {status_line:?}")),
    }
}
