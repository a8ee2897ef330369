//! The TCP connection to a peer: source address, TTL (eBGP multihop) and
//! TCP-MD5 (RFC 2385) are set before the SYN leaves, because the peer
//! judges the SYN by them.
#![allow(unsafe_code)] // setsockopt(TCP_MD5SIG) has no safe wrapper; see SAFETY notes.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// How to reach one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dial {
    pub peer: SocketAddr,
    pub source: Option<IpAddr>,
    /// IP TTL / hop limit of our packets.
    pub ttl: u32,
    /// TCP-MD5 key (≤ 80 bytes).
    pub password: Option<Vec<u8>>,
}

/// Longest TCP-MD5 key the kernel takes.
pub const MD5_MAX_KEY: usize = 80;

/// Opens the connection, or fails within `timeout`.
pub async fn connect(d: &Dial, timeout: Duration) -> io::Result<TcpStream> {
    let domain = Domain::for_address(d.peer);
    let sock = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    match d.peer {
        SocketAddr::V4(_) => sock.set_ttl_v4(d.ttl)?,
        SocketAddr::V6(_) => sock.set_unicast_hops_v6(d.ttl)?,
    }
    if let Some(src) = d.source {
        if src.is_ipv4() != d.peer.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("source address {src} is not of the peer's family"),
            ));
        }
        sock.bind(&SocketAddr::new(src, 0).into())?;
    }
    if let Some(key) = &d.password {
        set_md5(&sock, d.peer, key)?;
    }
    let sock = TcpSocket::from_std_stream(sock.into());
    match tokio::time::timeout(timeout, sock.connect(d.peer)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer from {} within {timeout:?}", d.peer),
        )),
    }
}

/// `struct tcp_md5sig` from linux/tcp.h.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY],
}

/// Installs the TCP-MD5 key for `peer` on `sock`.
fn set_md5(sock: &impl AsRawFd, peer: SocketAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP-MD5 password is {} bytes; at most 80", key.len()),
        ));
    }
    let addr = socket2::SockAddr::from(peer);
    // SAFETY: all-zero is a valid value for this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    // SAFETY: `addr.len()` ≤ size_of::<sockaddr_storage>() (SockAddr holds
    // at most a sockaddr_storage), and the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            addr.as_ptr().cast::<u8>(),
            (&raw mut sig.addr).cast::<u8>(),
            addr.len() as usize,
        );
    }
    sig.keylen = key.len() as u16; // ≤ 80, checked above
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: the fd is open for the call's duration; the pointer and length
    // describe `sig`, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&raw const sig).cast(),
            size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether this kernel accepts TCP_MD5SIG (CONFIG_TCP_MD5SIG).
pub fn md5_supported() -> bool {
    let Ok(sock) = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)) else {
        return false;
    };
    set_md5(&sock, SocketAddr::from(([127, 0, 0, 1], 179)), b"probe").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_md5_struct_has_the_kernel_layout() {
        assert_eq!(size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn overlong_md5_keys_are_refused_before_the_kernel() {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        let e = set_md5(&sock, SocketAddr::from(([127, 0, 0, 1], 179)), &[b'x'; 81]).unwrap_err();
        assert!(e.to_string().contains("at most 80"), "{e}");
    }

    #[tokio::test]
    async fn a_source_of_the_other_family_is_refused() {
        let d = Dial {
            peer: "127.0.0.1:1".parse().unwrap(),
            source: Some("::1".parse().unwrap()),
            ttl: 1,
            password: None,
        };
        let e = connect(&d, Duration::from_secs(1)).await.unwrap_err();
        assert!(e.to_string().contains("not of the peer's family"), "{e}");
    }

    #[tokio::test]
    async fn connects_from_the_chosen_source_with_the_chosen_ttl() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let d = Dial {
            peer: listener.local_addr().unwrap(),
            source: Some("127.0.0.2".parse().unwrap()),
            ttl: 7,
            password: None,
        };
        let (stream, accepted) =
            tokio::join!(connect(&d, Duration::from_secs(2)), listener.accept());
        let stream = stream.unwrap();
        assert_eq!(stream.ttl().unwrap(), 7);
        assert_eq!(
            accepted.unwrap().1.ip(),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
    }
}
