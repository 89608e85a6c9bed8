//! The memory cap of one plugin call, over every linear memory the call's
//! instances create or grow: a component may hold several memories (one
//! per core module, or a module with several), and a cap counted per memory
//! would give it the cap once per memory. A growth past the cap traps.
//!
//! Owns the count of one call's memory; the store state holds one and
//! resets it for every call. Tables are left to the pooling allocator's
//! slots.

use wasmtime::ResourceLimiter;

/// The total linear memory one call may hold.
#[derive(Debug)]
pub struct MemoryCap {
    cap: usize,
    /// Bytes of every memory of the call, as granted.
    used: usize,
    /// The last growth granted, taken back if the growth then failed.
    last_grant: usize,
}

impl MemoryCap {
    /// A cap of `cap` bytes over all of a call's memories.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            used: 0,
            last_grant: 0,
        }
    }

    /// Forget the memories of a finished call.
    pub fn reset(&mut self) {
        self.used = 0;
        self.last_grant = 0;
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        let total = self.used.saturating_add(more);
        if total > self.cap || maximum.is_some_and(|max| desired > max) {
            return Err(wasmtime::format_err!(
                "growing a memory to {desired} bytes would bring the plugin's memories to {total} bytes in all, past its memory limit of {} bytes (the channel's `memory`)",
                self.cap
            ));
        }
        self.used = total;
        self.last_grant = more;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(self.last_grant);
        self.last_grant = 0;
        Err(error.context("the plugin's memory could not grow (its memory limit)"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_covers_every_memory_together() {
        let mb = 1 << 20;
        let mut cap = MemoryCap::new(64 * mb);
        assert!(cap.memory_growing(0, 40 * mb, None).unwrap());
        let err = cap.memory_growing(0, 40 * mb, None).unwrap_err();
        assert!(err.to_string().contains("memory limit"), "{err}");
        assert!(cap.memory_growing(0, 24 * mb, None).unwrap());
        assert!(cap.memory_growing(24 * mb, 25 * mb, None).is_err());
        cap.reset();
        assert!(cap.memory_growing(0, 64 * mb, None).unwrap());
    }

    #[test]
    fn a_failed_growth_is_taken_back() {
        let mb = 1 << 20;
        let mut cap = MemoryCap::new(64 * mb);
        assert!(cap.memory_growing(0, 40 * mb, None).unwrap());
        assert!(cap.memory_grow_failed(wasmtime::format_err!("no")).is_err());
        assert!(cap.memory_growing(0, 60 * mb, None).unwrap());
    }
}
