//! BFD's UDP sockets (RFC 5881 §4, RFC 5883 §2): a receiver on port 3784
//! (single hop) or 4784 (multihop) that reports each packet's TTL / hop
//! limit, and per-session senders from a source port in 49152–65535 with
//! TTL 255. Reading the TTL needs recvmsg(2) and its control messages,
//! which socket2 does not parse: that, and turning IP_RECVTTL on, is this
//! module's unsafe code, each call with its SAFETY note.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;

/// Destination port of single-hop Control packets (RFC 5881).
pub const SINGLE_HOP_PORT: u16 = 3784;
/// Destination port of multihop Control packets (RFC 5883).
pub const MULTIHOP_PORT: u16 = 4784;

/// One received datagram.
#[derive(Clone, Debug)]
pub struct Datagram {
    pub bytes: Vec<u8>,
    pub from: SocketAddr,
    /// The IP TTL / hop limit it arrived with (None: the kernel said none).
    pub ttl: Option<u8>,
}

/// A receiver on one port for one address family.
#[derive(Debug)]
pub struct Receiver {
    fd: AsyncFd<Socket>,
}

impl Receiver {
    pub fn bind(port: u16, v6: bool) -> io::Result<Receiver> {
        let (domain, any) = if v6 {
            (Domain::IPV6, IpAddr::V6(Ipv6Addr::UNSPECIFIED))
        } else {
            (Domain::IPV4, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if v6 {
            s.set_only_v6(true)?;
            s.set_recv_hoplimit_v6(true)?;
        } else {
            recv_ttl_v4(&s)?;
        }
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&SockAddr::from(SocketAddr::new(any, port)))?;
        // SAFETY: `s` is a fresh socket this receiver owns; it stays
        // registered for exactly as long as it is open.
        let fd = unsafe { AsyncFd::register(s) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Receiver { fd })
    }

    /// The next datagram.
    pub async fn recv(&self) -> io::Result<Datagram> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_with_ttl(fd.get_ref())) {
                Ok(r) => return r,
                Err(_would_block) => {}
            }
        }
    }
}

/// IP_RECVTTL on: each IPv4 datagram comes with its TTL.
fn recv_ttl_v4(s: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value points at `on`, alive for the call, with
    // its size; the descriptor is open.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_RECVTTL,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// recvmsg(2) into a buffer, with the sender and the TTL/hop-limit
/// control message.
fn recv_with_ttl(s: &Socket) -> io::Result<Datagram> {
    let mut buf = [0u8; 512];
    let mut control = [0u64; 16]; // u64: cmsghdr alignment
    let mut ttl = None;
    // SAFETY: recvmsg(2) fills the sender's address within the storage and
    // length socket2 hands in; every other pointer in `msg` refers to a
    // local that outlives the call, with its true length. The CMSG_* macros
    // then walk the control buffer the kernel filled, within
    // msg_controllen, and each data pointer is read as the int its
    // (level, type) pair promises.
    let (n, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *len;
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control);
            let n = libc::recvmsg(s.as_raw_fd(), &raw mut msg, 0);
            let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
            *len = msg.msg_namelen;
            let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
            while !c.is_null() {
                let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
                if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                    || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
                {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    ttl = u8::try_from(v).ok();
                }
                c = libc::CMSG_NXTHDR(&raw const msg, c);
            }
            Ok(n)
        })
    }?;
    let from = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("datagram from a non-IP address"))?;
    Ok(Datagram {
        bytes: buf.get(..n).unwrap_or(&buf).to_vec(),
        from,
        ttl,
    })
}

/// A session's sender: bound to `local` (or any address of its family)
/// and the first free port from 49152 (RFC 5881 §4), TTL / hop limit 255.
pub fn sender(local: Option<IpAddr>, peer: IpAddr) -> io::Result<UdpSocket> {
    let local = local.unwrap_or(match peer {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let domain = if peer.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let mut last = io::Error::other("no source port free in 49152–65535");
    for port in 49152..=65535 {
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if peer.is_ipv4() {
            s.set_ttl_v4(255)?;
        } else {
            s.set_unicast_hops_v6(255)?;
        }
        s.set_nonblocking(true)?;
        match s.bind(&SockAddr::from(SocketAddr::new(local, port))) {
            Ok(()) => return UdpSocket::from_std(s.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}
