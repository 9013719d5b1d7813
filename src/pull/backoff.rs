//! When to poll next, pure: a random delay in [min, max] after a success, as OPA's downloader
//! sleeps, and an exponential backoff after errors (capped at max), so a host in trouble is not
//! hammered by every laptop at once.

use std::time::Duration;

/// The delay before the next poll. `failures` counts the errors in a row (0 after a success);
/// `random` is any random number (the jitter).
pub fn next_delay(min_secs: u64, max_secs: u64, failures: u32, random: u64) -> Duration {
    let (min, max) = (min_secs.min(max_secs), max_secs.max(min_secs));
    if failures == 0 {
        let span = max - min + 1;
        return Duration::from_secs(min + random % span);
    }
    // 1 s, 2 s, 4 s … after the 1st, 2nd, 3rd error, with up to half of it again as jitter, never
    // beyond max (and never below 1 s: a failing loopback host would otherwise be spun on).
    let base = 1u64 << (failures - 1).min(20);
    let jitter = if base > 1 { random % (base / 2 + 1) } else { 0 };
    Duration::from_secs((base + jitter).min(max.max(1)))
}

/// A random number from the OS (through a v4 UUID: no extra dependency for a jitter).
pub fn random() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays() {
        let secs = |min, max, failures, random| next_delay(min, max, failures, random).as_secs();
        // Success: within [min, max], both ends reachable.
        assert_eq!(secs(60, 120, 0, 0), 60);
        assert_eq!(secs(60, 120, 0, 60), 120);
        assert_eq!(secs(60, 120, 0, 61), 60);
        assert_eq!(secs(1, 1, 0, 12345), 1);
        // Swapped bounds are read as [min, max].
        assert_eq!(secs(120, 60, 0, 0), 60);
        // Errors: exponential, jittered by at most half, capped at max.
        assert_eq!(secs(60, 120, 1, 99), 1);
        assert_eq!(secs(60, 120, 2, 0), 2);
        assert_eq!(secs(60, 120, 3, 0), 4);
        assert_eq!(secs(60, 120, 3, 2), 6);
        assert_eq!(secs(60, 120, 4, 3), 8 + 3);
        assert_eq!(secs(60, 120, 30, 0), 120);
        assert_eq!(secs(1, 1, 5, 0), 1);
        for failures in 0..40 {
            for r in [0, 1, 7, u64::MAX] {
                assert!(secs(60, 120, failures, r) <= 120);
            }
        }
    }
}
