/*
 * Input to bindgen for src/ipvs/bindings.rs (see build.rs, cargo feature `regen-bindings`).
 * Only the kernel's UAPI headers: the generic netlink framing and the IPVS genl family.
 * build.rs allowlists the names lvsmon uses; add a header here and a pattern there together.
 */
#include <linux/netlink.h>
#include <linux/genetlink.h>
#include <linux/ip_vs.h>
