//! Carrier watch on the announcing interface through rtnetlink (RTM_NEWLINK
//! notifications), so a node whose link drops can be reported at once.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

const RTMGRP_LINK: u32 = 1;
const NLMSG_HDR: usize = 16;
const IFINFO: usize = 16;
const IFF_LOWER_UP: u32 = 0x10000;

/// Carrier state of one interface, read from netlink link messages.
#[derive(Debug)]
pub struct LinkMonitor {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
}

impl LinkMonitor {
    /// Subscribes to link notifications for `ifindex`.
    pub fn open(ifindex: i32) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain old data.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = RTMGRP_LINK;
        // SAFETY: pointer and length describe `sa`.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const sa).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd is handed over whole and stays open while registered.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))?;
        Ok(LinkMonitor { fd, ifindex })
    }

    /// Waits for the next notification about our interface; returns whether
    /// it has carrier (IFF_LOWER_UP).
    pub async fn next(&self) -> io::Result<bool> {
        let mut buf = vec![0u8; 16384];
        loop {
            let mut guard = self.fd.readable().await?;
            let res = guard.try_io(|inner| {
                // SAFETY: `buf` is valid for writes of its length.
                let n = unsafe {
                    libc::recv(
                        inner.as_raw_fd(),
                        buf.as_mut_ptr().cast::<libc::c_void>(),
                        buf.len(),
                        0,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            let n = match res {
                Ok(r) => r?,
                Err(_would_block) => continue,
            };
            if let Some(up) = carrier_in(&buf[..n], self.ifindex) {
                return Ok(up);
            }
        }
    }
}

/// The carrier state for `ifindex` in a batch of netlink messages, if any
/// message is an RTM_NEWLINK for it. Bounds-checked; junk yields None.
pub fn carrier_in(mut msgs: &[u8], ifindex: i32) -> Option<bool> {
    let mut found = None;
    while msgs.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes(msgs[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(msgs[4..6].try_into().ok()?);
        if len < NLMSG_HDR || len > msgs.len() {
            return found;
        }
        if kind == libc::RTM_NEWLINK && len >= NLMSG_HDR + IFINFO {
            let body = &msgs[NLMSG_HDR..NLMSG_HDR + IFINFO];
            let index = i32::from_ne_bytes(body[4..8].try_into().ok()?);
            let flags = u32::from_ne_bytes(body[8..12].try_into().ok()?);
            if index == ifindex {
                found = Some(flags & IFF_LOWER_UP != 0);
            }
        }
        let aligned = (len + 3) & !3;
        msgs = msgs.get(aligned..).unwrap_or_default();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newlink(index: i32, flags: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&32u32.to_ne_bytes());
        m.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&index.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m
    }

    #[test]
    fn reads_carrier_for_our_interface_only() {
        let mut batch = newlink(3, IFF_LOWER_UP);
        batch.extend(newlink(7, 0));
        assert_eq!(carrier_in(&batch, 3), Some(true));
        assert_eq!(carrier_in(&batch, 7), Some(false));
        assert_eq!(carrier_in(&batch, 9), None);
        for n in 0..batch.len() {
            let _ = carrier_in(&batch[..n], 7); // never panics on truncation
        }
        let mut bogus = newlink(3, 0);
        bogus[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert_eq!(carrier_in(&bogus, 3), None);
    }
}
