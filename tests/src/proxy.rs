//! A TCP proxy that a test can cut: while paused, it closes every connection through it and
//! every new one at once, so the service behind it is unreachable; resumed, it forwards
//! again.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A running proxy (its threads stop with the test process).
pub struct Proxy {
    /// Port it listens on, on 127.0.0.1.
    pub port: u16,
    paused: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    /// Listens on a free port and forwards every connection to `target` (`host:port`).
    pub fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = listener.local_addr().unwrap().port();
        let paused = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (p, c) = (paused.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if p.load(Ordering::Acquire) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                if let Ok(mut list) = c.lock() {
                    list.push(c2.try_clone().unwrap_or(c2));
                    list.push(s2.try_clone().unwrap_or(s2));
                }
                let (c3, s3) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, server));
                std::thread::spawn(move || pump(s3, c3));
            }
        });
        Proxy {
            port,
            paused,
            conns,
        }
    }

    /// Cuts every connection and refuses new ones until [`Proxy::resume`].
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        if let Ok(mut list) = self.conns.lock() {
            for s in list.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    /// Forwards again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }
}
