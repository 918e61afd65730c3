//! Indexes into the daemon's tables, each its own type so that a probe's index is never
//! taken for a real server's, nor a real server's for a virtual service's.
//!
//! Each is a `u32` (`#[repr(transparent)]`): the tables never hold more than 2³² entries,
//! and a slice index is one widening away ([`ProbeId::ix`] and the like).

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(pub u32);

        impl $name {
            /// The index into its table.
            #[inline(always)]
            pub fn ix(self) -> usize {
                self.0 as usize
            }

            /// The id of entry `i` of its table.
            #[inline(always)]
            pub fn of(i: usize) -> $name {
                debug_assert!(i <= u32::MAX as usize);
                $name(i as u32)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// A probe: one distinct check, run for one or more real servers.
    ProbeId
);
id!(
    /// A real server behind one virtual service.
    RealId
);
id!(
    /// A virtual service.
    VirtualId
);
