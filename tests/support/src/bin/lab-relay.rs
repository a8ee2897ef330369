//! `lab-relay LISTEN TARGET`: accepts connections on LISTEN and joins each
//! to a new connection to TARGET; either is `HOST:PORT` (TCP) or
//! `unix:PATH` (a bare path as TARGET means a Unix socket too).
//!
//! The lab's operator usually runs in the root namespace (it needs the lab
//! apiserver on 127.0.0.1) and serves its control channel on a Unix
//! socket; speakers in node namespaces reach it over the lab network
//! through a relay (`lab-relay NODE_NET:PORT unix:SOCK`). Tests that need
//! the operator to see speakers' real addresses run it inside a namespace
//! instead, and relay the apiserver to it: `lab-relay unix:SOCK
//! 127.0.0.1:PORT` in the root namespace, `lab-relay 127.0.0.1:PORT
//! unix:SOCK` in the operator's.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test tooling

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncWrite};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone, Debug)]
enum Addr {
    Tcp(String),
    Unix(String),
}

impl Addr {
    fn parse(s: &str, bare_path_is_unix: bool) -> Addr {
        match s.strip_prefix("unix:") {
            Some(p) => Addr::Unix(p.to_string()),
            None if bare_path_is_unix && s.contains('/') => Addr::Unix(s.to_string()),
            None => Addr::Tcp(s.to_string()),
        }
    }

    async fn connect(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match self {
            Addr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Addr::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
        })
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    async fn bind(a: &Addr) -> anyhow::Result<Listener> {
        Ok(match a {
            Addr::Tcp(a) => Listener::Tcp(tokio::net::TcpListener::bind(a).await?),
            Addr::Unix(p) => {
                let _ = std::fs::remove_file(p);
                Listener::Unix(tokio::net::UnixListener::bind(p)?)
            }
        })
    }

    async fn accept(&self) -> std::io::Result<(Box<dyn Io>, String)> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                (Box::new(s), peer.to_string())
            }
            Listener::Unix(l) => (Box::new(l.accept().await?.0), "unix".to_string()),
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: lab-relay LISTEN TARGET (HOST:PORT or unix:PATH)";
    let listen = Addr::parse(&args.next().context(usage)?, false);
    let target = Addr::parse(&args.next().context(usage)?, true);
    let listener = Listener::bind(&listen).await?;
    eprintln!("lab-relay: {listen:?} -> {target:?}");
    loop {
        let (mut conn, peer) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            match target.connect().await {
                Ok(mut out) => {
                    let r = tokio::io::copy_bidirectional(&mut conn, &mut out).await;
                    eprintln!("lab-relay: {peer} closed: {r:?}");
                }
                Err(e) => eprintln!("lab-relay: {peer}: connect {target:?}: {e}"),
            }
        });
    }
}
