//! Kernel definitions for the netlink codec: the only place where raw kernel headers enter.
//!
//! `bindings.rs` beside this file is bindgen's output for `<linux/netlink.h>`,
//! `<linux/genetlink.h>` and `<linux/ip_vs.h>` (see `build.rs`; regenerate with
//! `LVSMON_BLESS=1 cargo build --features regen-bindings`). It stays private here: bindgen
//! gives every value as `u32` (C `#define`s and anonymous enums alike), while the wire has
//! `u16` message types, flags and attribute types, `u8` genl commands and `u32` attribute
//! payloads. This module re-exports each value under its kernel name with the type of the field
//! it goes into, checked at compile time to fit, so the codec needs no casts. It also derives
//! what bindgen cannot evaluate: the `IPVS_*_MAX` macros (`__X_MAX - 1`), the header lengths and
//! the `NLMSG_ALIGN`/`NLA_ALIGN` rounding.
//!
//! The `repr(C)` header structs are re-exported as bindgen made them (`Debug`, `Copy`,
//! `Default`; their sizes and field offsets are checked at compile time in `bindings.rs`).

// Generated code: silence the naming and lint rules it was never written for.
#[allow(
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::all
)]
mod raw {
    // Generated; rustfmt does not follow `include!`, so `cargo fmt` leaves it as generated.
    include!("bindings.rs");
}

pub use raw::{genlmsghdr, ip_vs_flags, nlattr, nlmsgerr, nlmsghdr};

/// `v` as `u8`; a value that does not fit fails the build (the callers are `const` items).
const fn u8_of(v: u32) -> u8 {
    assert!(v <= u8::MAX as u32, "kernel constant does not fit in u8");
    v as u8
}

/// `v` as `u16`; a value that does not fit fails the build (the callers are `const` items).
const fn u16_of(v: u32) -> u16 {
    assert!(v <= u16::MAX as u32, "kernel constant does not fit in u16");
    v as u16
}

/// `v` unchanged, so every group below reads the same.
const fn u32_of(v: u32) -> u32 {
    v
}

/// `v` as `usize`, for lengths and alignments.
const fn usize_of(v: u32) -> usize {
    v as usize
}

/// `pub const NAME: TYPE = CONV(raw::NAME);` for each name, keeping its doc comment.
macro_rules! typed {
    ($ty:ty = $conv:ident: $($(#[$doc:meta])* $name:ident,)*) => {
        $($(#[$doc])* pub const $name: $ty = $conv(raw::$name);)*
    };
}

// ---- netlink (`<linux/netlink.h>`) ----

typed! { u16 = u16_of:
    /// `nlmsg_type`: nothing, skip.
    NLMSG_NOOP,
    /// `nlmsg_type`: an error or, with error 0, an ACK; the payload is an [`nlmsgerr`].
    NLMSG_ERROR,
    /// `nlmsg_type`: the end of a multipart (dump) reply.
    NLMSG_DONE,
    /// `nlmsg_type`: data lost.
    NLMSG_OVERRUN,
    /// `nlmsg_type`: the first value a protocol (here: a genl family id) may use.
    NLMSG_MIN_TYPE,
}

typed! { u16 = u16_of:
    /// `nlmsg_flags`: a request (set on every message lvsmon sends).
    NLM_F_REQUEST,
    /// `nlmsg_flags`: part of a multipart reply, ended by [`NLMSG_DONE`].
    NLM_F_MULTI,
    /// `nlmsg_flags`: ask for an ACK ([`NLMSG_ERROR`] with error 0).
    NLM_F_ACK,
    /// `nlmsg_flags`: echo the request back.
    NLM_F_ECHO,
    /// `nlmsg_flags`: the dump was inconsistent (the table changed during it); redo it.
    NLM_F_DUMP_INTR,
    /// `nlmsg_flags`: the dump was filtered as requested.
    NLM_F_DUMP_FILTERED,
    /// `nlmsg_flags` of a GET: return the whole table.
    NLM_F_ROOT,
    /// `nlmsg_flags` of a GET: return all matching entries.
    NLM_F_MATCH,
    /// `nlmsg_flags` of a GET: atomic.
    NLM_F_ATOMIC,
    /// `nlmsg_flags` of a GET: dump everything (`NLM_F_ROOT | NLM_F_MATCH`).
    NLM_F_DUMP,
    /// `nlmsg_flags` of a NEW: replace what exists.
    NLM_F_REPLACE,
    /// `nlmsg_flags` of a NEW: fail if it exists.
    NLM_F_EXCL,
    /// `nlmsg_flags` of a NEW: create if it does not exist.
    NLM_F_CREATE,
    /// `nlmsg_flags` of a NEW: append to the end of a list.
    NLM_F_APPEND,
    /// `nlmsg_flags` of an ACK: the echoed request was capped to its header.
    NLM_F_CAPPED,
    /// `nlmsg_flags` of an ACK: extended ACK attributes follow.
    NLM_F_ACK_TLVS,
}

typed! { u16 = u16_of:
    /// `nla_type` bit: the attribute holds nested attributes.
    NLA_F_NESTED,
    /// `nla_type` bit: the payload is in network byte order.
    NLA_F_NET_BYTEORDER,
}

/// `nla_type` without the [`NLA_F_NESTED`] and [`NLA_F_NET_BYTEORDER`] bits.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

typed! { usize = usize_of:
    /// Alignment of netlink messages.
    NLMSG_ALIGNTO,
    /// Alignment of netlink attributes.
    NLA_ALIGNTO,
}

/// `NLMSG_ALIGN(len)`: `len` rounded up to [`NLMSG_ALIGNTO`].
pub const fn nlmsg_align(len: usize) -> usize {
    (len + NLMSG_ALIGNTO - 1) & !(NLMSG_ALIGNTO - 1)
}

/// `NLA_ALIGN(len)`: `len` rounded up to [`NLA_ALIGNTO`].
pub const fn nla_align(len: usize) -> usize {
    (len + NLA_ALIGNTO - 1) & !(NLA_ALIGNTO - 1)
}

/// `NLMSG_HDRLEN`: bytes from a message's start to its payload.
pub const NLMSG_HDRLEN: usize = nlmsg_align(size_of::<nlmsghdr>());
/// `NLA_HDRLEN`: bytes from an attribute's start to its payload.
pub const NLA_HDRLEN: usize = nla_align(size_of::<nlattr>());

// ---- generic netlink (`<linux/genetlink.h>`) ----

/// `GENL_HDRLEN`: bytes of the genl header after the netlink header.
pub const GENL_HDRLEN: usize = nlmsg_align(size_of::<genlmsghdr>());

typed! { u16 = u16_of:
    /// `nlmsg_type` of the genl controller family (`nlctrl`), which resolves family names.
    GENL_ID_CTRL,
}

typed! { u8 = u8_of:
    /// Controller command: a family's description (reply to [`CTRL_CMD_GETFAMILY`]).
    CTRL_CMD_NEWFAMILY,
    /// Controller command: look a family up by [`CTRL_ATTR_FAMILY_NAME`].
    CTRL_CMD_GETFAMILY,
}

typed! { u16 = u16_of:
    /// Controller attribute: the family id (`u16`), the `nlmsg_type` to send to.
    CTRL_ATTR_FAMILY_ID,
    /// Controller attribute: the family name (NUL-terminated string).
    CTRL_ATTR_FAMILY_NAME,
    /// Controller attribute: the family version (`u32`).
    CTRL_ATTR_VERSION,
    /// Controller attribute: the family's user header size (`u32`).
    CTRL_ATTR_HDRSIZE,
    /// Controller attribute: the family's highest attribute type (`u32`).
    CTRL_ATTR_MAXATTR,
    /// Controller attribute: the family's operations (nested).
    CTRL_ATTR_OPS,
    /// Controller attribute: the family's multicast groups (nested).
    CTRL_ATTR_MCAST_GROUPS,
}

// ---- IPVS genl family (`<linux/ip_vs.h>`) ----

/// The genl family name to resolve with [`CTRL_CMD_GETFAMILY`], NUL included.
pub const IPVS_GENL_NAME: &[u8; 5] = raw::IPVS_GENL_NAME;

typed! { u8 = u8_of:
    /// `genlmsghdr.version` for the IPVS family.
    IPVS_GENL_VERSION,
}

typed! { u8 = u8_of:
    /// IPVS command: add a service.
    IPVS_CMD_NEW_SERVICE,
    /// IPVS command: modify a service.
    IPVS_CMD_SET_SERVICE,
    /// IPVS command: delete a service.
    IPVS_CMD_DEL_SERVICE,
    /// IPVS command: get one service, or all with [`NLM_F_DUMP`].
    IPVS_CMD_GET_SERVICE,
    /// IPVS command: add a destination.
    IPVS_CMD_NEW_DEST,
    /// IPVS command: modify a destination.
    IPVS_CMD_SET_DEST,
    /// IPVS command: delete a destination.
    IPVS_CMD_DEL_DEST,
    /// IPVS command: dump a service's destinations.
    IPVS_CMD_GET_DEST,
    /// IPVS command: start a sync daemon.
    IPVS_CMD_NEW_DAEMON,
    /// IPVS command: stop a sync daemon.
    IPVS_CMD_DEL_DAEMON,
    /// IPVS command: sync daemon status.
    IPVS_CMD_GET_DAEMON,
    /// IPVS command: set timeouts.
    IPVS_CMD_SET_CONFIG,
    /// IPVS command: get timeouts.
    IPVS_CMD_GET_CONFIG,
    /// IPVS command: the reply to [`IPVS_CMD_GET_INFO`].
    IPVS_CMD_SET_INFO,
    /// IPVS command: version and connection table size (also: is IPVS there at all).
    IPVS_CMD_GET_INFO,
    /// IPVS command: zero the counters.
    IPVS_CMD_ZERO,
    /// IPVS command: delete all services and destinations.
    IPVS_CMD_FLUSH,
}

/// `IPVS_CMD_MAX`: the highest IPVS command.
pub const IPVS_CMD_MAX: u8 = u8_of(raw::__IPVS_CMD_MAX - 1);

typed! { u16 = u16_of:
    /// Top-level attribute: a service (nested `IPVS_SVC_ATTR_*`).
    IPVS_CMD_ATTR_SERVICE,
    /// Top-level attribute: a destination (nested `IPVS_DEST_ATTR_*`).
    IPVS_CMD_ATTR_DEST,
    /// Top-level attribute: a sync daemon (nested `IPVS_DAEMON_ATTR_*`).
    IPVS_CMD_ATTR_DAEMON,
    /// Top-level attribute: TCP timeout (`u32`, seconds).
    IPVS_CMD_ATTR_TIMEOUT_TCP,
    /// Top-level attribute: TCP FIN_WAIT timeout (`u32`, seconds).
    IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
    /// Top-level attribute: UDP timeout (`u32`, seconds).
    IPVS_CMD_ATTR_TIMEOUT_UDP,
}

/// `IPVS_CMD_ATTR_MAX`: the highest top-level attribute type.
pub const IPVS_CMD_ATTR_MAX: u16 = u16_of(raw::__IPVS_CMD_ATTR_MAX - 1);

typed! { u16 = u16_of:
    /// Service attribute: address family (`u16`, `AF_INET`/`AF_INET6`).
    IPVS_SVC_ATTR_AF,
    /// Service attribute: protocol (`u16`, `IPPROTO_TCP`/`IPPROTO_UDP`/...).
    IPVS_SVC_ATTR_PROTOCOL,
    /// Service attribute: virtual address (4 or 16 bytes, network order).
    IPVS_SVC_ATTR_ADDR,
    /// Service attribute: virtual port (`u16`, network order).
    IPVS_SVC_ATTR_PORT,
    /// Service attribute: firewall mark (`u32`), instead of protocol/address/port.
    IPVS_SVC_ATTR_FWMARK,
    /// Service attribute: scheduler name (string, at most [`IP_VS_SCHEDNAME_MAXLEN`]).
    IPVS_SVC_ATTR_SCHED_NAME,
    /// Service attribute: flags ([`ip_vs_flags`], `IP_VS_SVC_F_*`).
    IPVS_SVC_ATTR_FLAGS,
    /// Service attribute: persistence timeout (`u32`, seconds).
    IPVS_SVC_ATTR_TIMEOUT,
    /// Service attribute: persistence netmask (`u32`; a prefix length for IPv6).
    IPVS_SVC_ATTR_NETMASK,
    /// Service attribute: counters (nested `IPVS_STATS_ATTR_*`, 32-bit).
    IPVS_SVC_ATTR_STATS,
    /// Service attribute: persistence engine name (string, at most [`IP_VS_PENAME_MAXLEN`]).
    IPVS_SVC_ATTR_PE_NAME,
    /// Service attribute: counters (nested `IPVS_STATS_ATTR_*`, 64-bit).
    IPVS_SVC_ATTR_STATS64,
}

/// `IPVS_SVC_ATTR_MAX`: the highest service attribute type.
pub const IPVS_SVC_ATTR_MAX: u16 = u16_of(raw::__IPVS_SVC_ATTR_MAX - 1);

typed! { u16 = u16_of:
    /// Destination attribute: real address (4 or 16 bytes, network order).
    IPVS_DEST_ATTR_ADDR,
    /// Destination attribute: real port (`u16`, network order).
    IPVS_DEST_ATTR_PORT,
    /// Destination attribute: forwarding method (`u32`, `IP_VS_CONN_F_*`).
    IPVS_DEST_ATTR_FWD_METHOD,
    /// Destination attribute: weight (`u32`; 0 quiesces).
    IPVS_DEST_ATTR_WEIGHT,
    /// Destination attribute: upper connection threshold (`u32`).
    IPVS_DEST_ATTR_U_THRESH,
    /// Destination attribute: lower connection threshold (`u32`).
    IPVS_DEST_ATTR_L_THRESH,
    /// Destination attribute: active connections (`u32`, read only).
    IPVS_DEST_ATTR_ACTIVE_CONNS,
    /// Destination attribute: inactive connections (`u32`, read only).
    IPVS_DEST_ATTR_INACT_CONNS,
    /// Destination attribute: persistent connections (`u32`, read only).
    IPVS_DEST_ATTR_PERSIST_CONNS,
    /// Destination attribute: counters (nested `IPVS_STATS_ATTR_*`, 32-bit).
    IPVS_DEST_ATTR_STATS,
    /// Destination attribute: the real's address family (`u16`), if not the service's.
    IPVS_DEST_ATTR_ADDR_FAMILY,
    /// Destination attribute: counters (nested `IPVS_STATS_ATTR_*`, 64-bit).
    IPVS_DEST_ATTR_STATS64,
    /// Destination attribute: tunnel type (`u8`, `IP_VS_CONN_F_TUNNEL_TYPE_*`).
    IPVS_DEST_ATTR_TUN_TYPE,
    /// Destination attribute: tunnel port (`u16`, network order).
    IPVS_DEST_ATTR_TUN_PORT,
    /// Destination attribute: tunnel flags (`u16`, `IP_VS_TUNNEL_ENCAP_FLAG_*`).
    IPVS_DEST_ATTR_TUN_FLAGS,
}

/// `IPVS_DEST_ATTR_MAX`: the highest destination attribute type.
pub const IPVS_DEST_ATTR_MAX: u16 = u16_of(raw::__IPVS_DEST_ATTR_MAX - 1);

/// `IPVS_DAEMON_ATTR_MAX`: the highest sync daemon attribute type (lvsmon sends none).
pub const IPVS_DAEMON_ATTR_MAX: u16 = u16_of(raw::__IPVS_DAEMON_ATTR_MAX - 1);

typed! { u16 = u16_of:
    /// Counter attribute: connections.
    IPVS_STATS_ATTR_CONNS,
    /// Counter attribute: packets in.
    IPVS_STATS_ATTR_INPKTS,
    /// Counter attribute: packets out.
    IPVS_STATS_ATTR_OUTPKTS,
    /// Counter attribute: bytes in.
    IPVS_STATS_ATTR_INBYTES,
    /// Counter attribute: bytes out.
    IPVS_STATS_ATTR_OUTBYTES,
    /// Counter attribute: connections per second.
    IPVS_STATS_ATTR_CPS,
    /// Counter attribute: packets in per second.
    IPVS_STATS_ATTR_INPPS,
    /// Counter attribute: packets out per second.
    IPVS_STATS_ATTR_OUTPPS,
    /// Counter attribute: bytes in per second.
    IPVS_STATS_ATTR_INBPS,
    /// Counter attribute: bytes out per second.
    IPVS_STATS_ATTR_OUTBPS,
    /// Counter attribute: padding for 64-bit alignment (skip).
    IPVS_STATS_ATTR_PAD,
}

/// `IPVS_STATS_ATTR_MAX`: the highest counter attribute type.
pub const IPVS_STATS_ATTR_MAX: u16 = u16_of(raw::__IPVS_STATS_ATTR_MAX - 1);

typed! { u16 = u16_of:
    /// Info attribute: IPVS version (`u32`, `0x010201` is 1.2.1).
    IPVS_INFO_ATTR_VERSION,
    /// Info attribute: connection hash table size (`u32`).
    IPVS_INFO_ATTR_CONN_TAB_SIZE,
}

/// `IPVS_INFO_ATTR_MAX`: the highest info attribute type.
pub const IPVS_INFO_ATTR_MAX: u16 = u16_of(raw::__IPVS_INFO_ATTR_MAX - 1);

typed! { u32 = u32_of:
    /// Mask of the forwarding method bits in [`IPVS_DEST_ATTR_FWD_METHOD`].
    IP_VS_CONN_F_FWD_MASK,
    /// Forwarding: masquerading (NAT).
    IP_VS_CONN_F_MASQ,
    /// Forwarding: local node.
    IP_VS_CONN_F_LOCALNODE,
    /// Forwarding: IP-in-IP tunnel.
    IP_VS_CONN_F_TUNNEL,
    /// Forwarding: direct routing (gatewaying).
    IP_VS_CONN_F_DROUTE,
    /// Forwarding: cache bypass.
    IP_VS_CONN_F_BYPASS,
}

typed! { u8 = u8_of:
    /// Tunnel type for [`IPVS_DEST_ATTR_TUN_TYPE`]: IP-in-IP.
    IP_VS_CONN_F_TUNNEL_TYPE_IPIP,
    /// Tunnel type for [`IPVS_DEST_ATTR_TUN_TYPE`]: GUE.
    IP_VS_CONN_F_TUNNEL_TYPE_GUE,
    /// Tunnel type for [`IPVS_DEST_ATTR_TUN_TYPE`]: GRE.
    IP_VS_CONN_F_TUNNEL_TYPE_GRE,
}

typed! { u16 = u16_of:
    /// Tunnel flags for [`IPVS_DEST_ATTR_TUN_FLAGS`]: no checksum.
    IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM,
    /// Tunnel flags for [`IPVS_DEST_ATTR_TUN_FLAGS`]: checksum.
    IP_VS_TUNNEL_ENCAP_FLAG_CSUM,
    /// Tunnel flags for [`IPVS_DEST_ATTR_TUN_FLAGS`]: remote checksum offload.
    IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM,
}

typed! { u32 = u32_of:
    /// Service flag: persistent (client affinity for [`IPVS_SVC_ATTR_TIMEOUT`]).
    IP_VS_SVC_F_PERSISTENT,
    /// Service flag: hashed entry (kernel-internal; set in replies).
    IP_VS_SVC_F_HASHED,
    /// Service flag: one-packet scheduling (UDP).
    IP_VS_SVC_F_ONEPACKET,
    /// Service flag: scheduler flag 1.
    IP_VS_SVC_F_SCHED1,
    /// Service flag: scheduler flag 2.
    IP_VS_SVC_F_SCHED2,
    /// Service flag: scheduler flag 3.
    IP_VS_SVC_F_SCHED3,
    /// Service flag: `sh` scheduler falls back to another real when the chosen one is down.
    IP_VS_SVC_F_SCHED_SH_FALLBACK,
    /// Service flag: `sh` scheduler hashes the source port too.
    IP_VS_SVC_F_SCHED_SH_PORT,
}

typed! { usize = usize_of:
    /// Longest scheduler name, NUL included.
    IP_VS_SCHEDNAME_MAXLEN,
    /// Longest persistence engine name, NUL included.
    IP_VS_PENAME_MAXLEN,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipvs_commands_and_attributes() {
        assert_eq!(IPVS_CMD_NEW_SERVICE, 1);
        assert_eq!(IPVS_CMD_SET_DEST, 6);
        assert_eq!(IPVS_CMD_MAX, 17);
        assert_eq!(IPVS_DEST_ATTR_WEIGHT, 4);
        assert_eq!(IPVS_DEST_ATTR_ADDR_FAMILY, 11);
        assert_eq!(IPVS_DEST_ATTR_MAX, IPVS_DEST_ATTR_TUN_FLAGS);
        assert_eq!(IPVS_SVC_ATTR_NETMASK, 9);
        assert_eq!(IPVS_SVC_ATTR_MAX, IPVS_SVC_ATTR_STATS64);
        assert_eq!(IPVS_CMD_ATTR_MAX, IPVS_CMD_ATTR_TIMEOUT_UDP);
        assert_eq!(IPVS_STATS_ATTR_MAX, IPVS_STATS_ATTR_PAD);
        assert_eq!(IPVS_INFO_ATTR_MAX, IPVS_INFO_ATTR_CONN_TAB_SIZE);
        assert_eq!(IPVS_DAEMON_ATTR_MAX, 8);
        assert_eq!(IPVS_GENL_NAME, b"IPVS\0");
        assert_eq!(IPVS_GENL_VERSION, 1);
    }

    #[test]
    fn forwarding_and_flags() {
        assert_eq!(IP_VS_CONN_F_MASQ, 0);
        assert_eq!(IP_VS_CONN_F_TUNNEL, 2);
        assert_eq!(IP_VS_CONN_F_DROUTE, 3);
        assert_eq!(
            IP_VS_CONN_F_DROUTE & IP_VS_CONN_F_FWD_MASK,
            IP_VS_CONN_F_DROUTE
        );
        assert_eq!(IP_VS_SVC_F_PERSISTENT, 1);
        assert_eq!(IP_VS_SCHEDNAME_MAXLEN, 16);
    }

    #[test]
    fn netlink_and_genl() {
        assert_eq!(GENL_ID_CTRL, 16);
        assert_eq!(GENL_ID_CTRL, NLMSG_MIN_TYPE);
        assert_eq!(CTRL_CMD_GETFAMILY, 3);
        assert_eq!(CTRL_ATTR_FAMILY_ID, 1);
        assert_eq!(CTRL_ATTR_FAMILY_NAME, 2);
        assert_eq!(NLMSG_ERROR, 2);
        assert_eq!(NLMSG_DONE, 3);
        assert_eq!(NLM_F_REQUEST | NLM_F_ACK, 5);
        assert_eq!(NLM_F_DUMP, NLM_F_ROOT | NLM_F_MATCH);
        assert_eq!(NLA_F_NESTED, 0x8000);
        assert_eq!(NLA_TYPE_MASK, 0x3fff);
    }

    #[test]
    fn struct_sizes_and_header_lengths() {
        assert_eq!(size_of::<nlmsghdr>(), 16);
        assert_eq!(size_of::<genlmsghdr>(), 4);
        assert_eq!(size_of::<nlattr>(), 4);
        assert_eq!(size_of::<nlmsgerr>(), 20);
        assert_eq!(size_of::<ip_vs_flags>(), 8);
        assert_eq!((NLMSG_HDRLEN, GENL_HDRLEN, NLA_HDRLEN), (16, 4, 4));
        assert_eq!(
            (nla_align(0), nla_align(1), nla_align(4), nla_align(5)),
            (0, 4, 4, 8)
        );
        assert_eq!(nlmsg_align(17), 20);
    }
}
