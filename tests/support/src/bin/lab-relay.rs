//! `lab-relay LISTEN UNIX_PATH`: accepts TCP on LISTEN (inside a lab
//! network namespace) and joins each connection to the Unix socket at
//! UNIX_PATH. The lab's operator runs in the root namespace (it needs the
//! lab apiserver on 127.0.0.1) and serves its control channel on a Unix
//! socket; speakers in node namespaces reach it over the lab network
//! through this relay, so a node can be cut off the way a real one would.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // test tooling

use anyhow::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().context("usage: lab-relay LISTEN UNIX_PATH")?;
    let path = args.next().context("usage: lab-relay LISTEN UNIX_PATH")?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("lab-relay: {listen} -> unix:{path}");
    loop {
        let (mut tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let path = path.clone();
        tokio::spawn(async move {
            match tokio::net::UnixStream::connect(&path).await {
                Ok(mut unix) => {
                    let r = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    eprintln!("lab-relay: {peer} closed: {r:?}");
                }
                Err(e) => eprintln!("lab-relay: {peer}: connect {path}: {e}"),
            }
        });
    }
}
