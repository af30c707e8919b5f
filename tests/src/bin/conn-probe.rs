// A test helper, not shipped: failures are reported on stdout, and a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

//! `conn-probe ADDR`: a client the kernel tests run inside a workload's cgroup (through
//! `interlock exec`), because a socket belongs to the cgroup of the process that creates it.
//! Driven line by line on stdin, answering one line per command on stdout:
//!
//! | command | answer |
//! |---|---|
//! | `open` | keeps a connection to ADDR: `ok` or `err <errno> <message>` |
//! | `send <hex>` | writes the bytes on it, reads one response: `status <code> <hex body>` or `err ...` |
//! | `wait_closed <ms>` | reads until the peer ends it: `reset <errno>`, `eof`, or `open` after ms |
//! | `connect` | a fresh connect to ADDR, then closes it: `ok` or `err <errno> <message>` |

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn err(e: &std::io::Error) -> String {
    format!("err {} {e}", e.raw_os_error().unwrap_or(0))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn read_response(stream: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed mid-response"));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let len = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

fn main() {
    let addr: SocketAddr = std::env::args().nth(1).expect("usage: conn-probe ADDR").parse().expect("ADDR is ip:port");
    let mut kept: Option<TcpStream> = None;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let (cmd, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let answer = match cmd {
            "open" => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    kept = Some(s);
                    "ok".to_owned()
                }
                Err(e) => err(&e),
            },
            "send" => match kept.as_mut() {
                None => "err 0 no connection".to_owned(),
                Some(s) => match s.write_all(&unhex(arg)).and_then(|()| read_response(s)) {
                    Ok((status, body)) => format!("status {status} {}", hex(&body)),
                    Err(e) => err(&e),
                },
            },
            "wait_closed" => match kept.as_mut() {
                None => "err 0 no connection".to_owned(),
                Some(s) => {
                    s.set_read_timeout(Some(Duration::from_millis(arg.parse().unwrap_or(1000)))).unwrap();
                    let mut b = [0u8; 1024];
                    match s.read(&mut b) {
                        Ok(0) => "eof".to_owned(),
                        Ok(n) => format!("data {n}"),
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                            "open".to_owned()
                        }
                        Err(e) => format!("reset {} {e}", e.raw_os_error().unwrap_or(0)),
                    }
                }
            },
            "connect" => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(_) => "ok".to_owned(),
                Err(e) => err(&e),
            },
            "exit" => return,
            other => format!("err 0 unknown command {other:?}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
}
