//! In-memory token buckets for the exchange and challenge endpoints: one bucket per person and one
//! per client address, each holding a minute's allowance and refilling evenly. A call spends one
//! token from both or from neither. Buckets live in this process only, so with several instances
//! behind a load balancer the effective limit is the per-instance limit times the instance count.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets beyond this many are pruned (full ones first), so a flood of addresses can't grow memory.
const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Set at the first refusal of a run of refusals, cleared by the next allowed call: each run
    /// is audited once, not once per call.
    refusing: bool,
}

struct Buckets<K> {
    capacity: f64,
    per_sec: f64,
    map: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Buckets {
            capacity,
            per_sec: capacity / 60.0,
            map: HashMap::new(),
        }
    }

    fn refilled(&mut self, key: K, now: Instant) -> Bucket {
        let (capacity, per_sec) = (self.capacity, self.per_sec);
        let bucket = self.map.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
            refusing: false,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.updated = now;
        *bucket
    }

    fn wait_secs(&self, bucket: &Bucket) -> u64 {
        ((1.0 - bucket.tokens) / self.per_sec).ceil().max(1.0) as u64
    }

    fn prune(&mut self, now: Instant) {
        if self.map.len() <= MAX_BUCKETS {
            return;
        }
        let (capacity, per_sec) = (self.capacity, self.per_sec);
        self.map.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_sec < capacity
        });
        if self.map.len() > MAX_BUCKETS {
            self.map.clear();
        }
    }
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    User,
    Address,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::User => "user",
            LimitScope::Address => "address",
        }
    }
}

/// A refused call: wait this long; `first` is true for the first refusal of a run (audit it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub scope: LimitScope,
    pub retry_after_secs: u64,
    pub first: bool,
}

pub struct RateLimiter {
    inner: Mutex<(Buckets<i64>, Buckets<IpAddr>)>,
}

impl RateLimiter {
    pub fn new(per_user_per_minute: u32, per_ip_per_minute: u32) -> Self {
        RateLimiter {
            inner: Mutex::new((
                Buckets::new(per_user_per_minute),
                Buckets::new(per_ip_per_minute),
            )),
        }
    }

    /// Spends one call for `user_id` from `ip` (when known), or says who refused and for how long.
    pub fn check(&self, user_id: i64, ip: Option<IpAddr>, now: Instant) -> Result<(), Refused> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (users, ips) = &mut *guard;
        users.prune(now);
        ips.prune(now);
        let user = users.refilled(user_id, now);
        if user.tokens < 1.0 {
            let retry_after_secs = users.wait_secs(&user);
            let b = users.map.get_mut(&user_id).expect("just refilled");
            let first = !b.refusing;
            b.refusing = true;
            return Err(Refused {
                scope: LimitScope::User,
                retry_after_secs,
                first,
            });
        }
        if let Some(ip) = ip {
            let addr = ips.refilled(ip, now);
            if addr.tokens < 1.0 {
                let retry_after_secs = ips.wait_secs(&addr);
                let b = ips.map.get_mut(&ip).expect("just refilled");
                let first = !b.refusing;
                b.refusing = true;
                return Err(Refused {
                    scope: LimitScope::Address,
                    retry_after_secs,
                    first,
                });
            }
            let b = ips.map.get_mut(&ip).expect("just refilled");
            b.tokens -= 1.0;
            b.refusing = false;
        }
        let b = users.map.get_mut(&user_id).expect("just refilled");
        b.tokens -= 1.0;
        b.refusing = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_person_gets_a_minutes_allowance_then_waits_for_it_to_refill() {
        let limiter = RateLimiter::new(3, 100);
        let t = Instant::now();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            limiter.check(1, ip, t).unwrap();
        }
        let refused = limiter.check(1, ip, t).unwrap_err();
        assert_eq!(
            refused,
            Refused {
                scope: LimitScope::User,
                retry_after_secs: 20,
                first: true
            }
        );
        assert!(
            !limiter.check(1, ip, t).unwrap_err().first,
            "one audit per run"
        );
        limiter
            .check(2, ip, t)
            .expect("another person has their own bucket");
        limiter
            .check(1, ip, t + Duration::from_secs(20))
            .expect("one token back after 20 s");
    }

    #[test]
    fn an_address_is_limited_across_people_and_a_refusal_spends_nothing() {
        let limiter = RateLimiter::new(100, 2);
        let t = Instant::now();
        let ip = Some(IpAddr::from([10, 0, 0, 2]));
        limiter.check(1, ip, t).unwrap();
        limiter.check(2, ip, t).unwrap();
        let refused = limiter.check(3, ip, t).unwrap_err();
        assert_eq!(refused.scope, LimitScope::Address);
        assert_eq!(refused.retry_after_secs, 30);
        // Person 3 spent nothing on the refused call: from another address they have a full minute.
        for _ in 0..100 {
            limiter.check(3, None, t).unwrap();
        }
        assert_eq!(
            limiter.check(3, None, t).unwrap_err().scope,
            LimitScope::User
        );
    }
}
