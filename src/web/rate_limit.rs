//! Rate limits for the exchange and challenge endpoints: one bucket per person and one per client
//! address, each holding a minute's allowance and refilling evenly (`governor`'s GCRA). The person
//! is checked first: a call refused by the person's limit spends nothing from the address, so one
//! person cannot use up an address that others share. Buckets live in this process only, so with
//! several instances behind a load balancer the effective limit is the per-instance limit times
//! the instance count.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{NotUntil, Quota};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Idle buckets are evicted once a limiter holds this many (and again each time the count doubles
/// past what was left): a flood of addresses cannot grow memory without bound, and a bucket that
/// still holds a debt is never dropped.
const EVICT_FROM: usize = 10_000;

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

/// The address a bucket belongs to: an IPv4 address, or an IPv6 address's /64 (one subscriber's
/// network: an IPv6 client can pick any address in it, so each would otherwise be a fresh bucket).
pub fn address_bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// One keyed limit: governor's buckets, plus the end of each key's current run of refusals.
struct Keyed<K: Hash + Eq + Clone, C: Clock> {
    buckets: governor::RateLimiter<K, HashMapStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    /// When a refused key may call again. While a run of refusals lasts, nothing is spent, so the
    /// instant stays the same; an allowed call moves it. A new instant is a new run.
    refusing: Mutex<HashMap<K, C::Instant>>,
    evict_buckets_at: AtomicUsize,
    clock: C,
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Keyed<K, C> {
    fn new(per_minute: u32, clock: C) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Keyed {
            buckets: governor::RateLimiter::hashmap_with_clock(quota, clock.clone()),
            refusing: Mutex::new(HashMap::new()),
            evict_buckets_at: AtomicUsize::new(EVICT_FROM),
            clock,
        }
    }

    /// Spends one call for `key`, or says how long to wait and whether this starts a run.
    fn check(&self, key: &K) -> Result<(), (u64, bool)> {
        let outcome = self.buckets.check_key(key);
        self.evict_idle();
        outcome.map_err(|refused: NotUntil<C::Instant>| {
            let now = self.clock.now();
            let until = refused.earliest_possible();
            let wait = refused.wait_time_from(now);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut runs = self.refusing.lock().unwrap_or_else(|p| p.into_inner());
            if runs.len() >= EVICT_FROM {
                // A run whose wait is over has ended (the next call is allowed).
                runs.retain(|_, until| *until > now);
            }
            let first = runs.insert(key.clone(), until) != Some(until);
            (secs.max(1), first)
        })
    }

    /// Drops the buckets that are full again (indistinguishable from new ones); never the others.
    fn evict_idle(&self) {
        if self.buckets.len() < self.evict_buckets_at.load(Ordering::Relaxed) {
            return;
        }
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
        // Live buckets stay; the next sweep waits until the map has doubled, so a map full of
        // live buckets is not swept on every call.
        let left = self.buckets.len();
        self.evict_buckets_at
            .store(EVICT_FROM.max(left.saturating_mul(2)), Ordering::Relaxed);
    }
}

pub struct RateLimiter<C: Clock = DefaultClock> {
    users: Keyed<i64, C>,
    addresses: Keyed<IpAddr, C>,
}

impl RateLimiter {
    pub fn new(per_user_per_minute: u32, per_ip_per_minute: u32) -> Self {
        RateLimiter::with_clock(
            per_user_per_minute,
            per_ip_per_minute,
            DefaultClock::default(),
        )
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(per_user_per_minute: u32, per_ip_per_minute: u32, clock: C) -> Self {
        RateLimiter {
            users: Keyed::new(per_user_per_minute, clock.clone()),
            addresses: Keyed::new(per_ip_per_minute, clock),
        }
    }

    /// Spends one call for `user_id` from `ip` (when known), or says who refused and for how long.
    pub fn check(&self, user_id: i64, ip: Option<IpAddr>) -> Result<(), Refused> {
        let refused = |scope| {
            move |(retry_after_secs, first)| Refused {
                scope,
                retry_after_secs,
                first,
            }
        };
        self.users
            .check(&user_id)
            .map_err(refused(LimitScope::User))?;
        if let Some(ip) = ip {
            self.addresses
                .check(&address_bucket(ip))
                .map_err(refused(LimitScope::Address))?;
        }
        Ok(())
    }

    #[cfg(test)]
    fn buckets(&self) -> (usize, usize) {
        (self.users.buckets.len(), self.addresses.buckets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    fn limiter(per_user: u32, per_ip: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            RateLimiter::with_clock(per_user, per_ip, clock.clone()),
            clock,
        )
    }

    #[test]
    fn a_person_gets_a_minutes_allowance_then_waits_for_it_to_refill() {
        let (limiter, clock) = limiter(3, 100);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            limiter.check(1, ip).unwrap();
        }
        let refused = limiter.check(1, ip).unwrap_err();
        assert_eq!(
            refused,
            Refused {
                scope: LimitScope::User,
                retry_after_secs: 20,
                first: true
            }
        );
        assert!(
            !limiter.check(1, ip).unwrap_err().first,
            "one audit per run"
        );
        limiter
            .check(2, ip)
            .expect("another person has their own bucket");
        clock.advance(Duration::from_secs(20));
        limiter.check(1, ip).expect("one token back after 20 s");
        assert!(
            limiter.check(1, ip).unwrap_err().first,
            "a refusal after an allowed call starts a new run"
        );
    }

    #[test]
    fn an_address_is_limited_across_people_and_a_persons_refusals_spend_nothing_from_it() {
        let (limiter, _clock) = limiter(1, 2);
        let ip = Some(IpAddr::from([10, 0, 0, 2]));
        limiter.check(1, ip).unwrap();
        for _ in 0..5 {
            assert_eq!(limiter.check(1, ip).unwrap_err().scope, LimitScope::User);
        }
        limiter
            .check(2, ip)
            .expect("person 1's refused calls left the address its second call");
        let refused = limiter.check(3, ip).unwrap_err();
        assert_eq!(refused.scope, LimitScope::Address);
        assert_eq!(refused.retry_after_secs, 30);
        limiter
            .check(4, Some(IpAddr::from([10, 0, 0, 3])))
            .expect("another address has its own bucket");
    }

    #[test]
    fn one_shot_addresses_past_the_cap_do_not_reset_an_active_clients_limit() {
        let (limiter, clock) = limiter(2, 2);
        let busy = Some(IpAddr::from([10, 0, 0, 3]));
        limiter.check(1, busy).unwrap();
        limiter.check(2, busy).unwrap();
        assert_eq!(
            limiter.check(3, busy).unwrap_err().scope,
            LimitScope::Address
        );
        // More one-shot people and addresses than the limiter keeps buckets for.
        for n in 0..12_000u32 {
            let ip = IpAddr::from((0x0b00_0000 + n).to_be_bytes());
            limiter.check(1_000 + i64::from(n), Some(ip)).unwrap();
        }
        assert_eq!(
            limiter.check(4, busy).unwrap_err().scope,
            LimitScope::Address,
            "the busy address is still limited"
        );
        assert_eq!(
            limiter.check(1, None).map(|_| ()),
            Ok(()),
            "person 1 has one call left"
        );
        assert_eq!(
            limiter.check(1, None).unwrap_err().scope,
            LimitScope::User,
            "and then none"
        );
        // A minute on, the busy address spends its refilled allowance again, then one-shot
        // traffic passes the next sweep: the idle buckets go, the busy ones stay.
        clock.advance(Duration::from_secs(61));
        limiter.check(5, busy).unwrap();
        limiter.check(6, busy).unwrap();
        assert_eq!(
            limiter.check(7, busy).unwrap_err().scope,
            LimitScope::Address
        );
        for n in 0..12_000u32 {
            let ip = IpAddr::from((0x0c00_0000 + n).to_be_bytes());
            limiter.check(100_000 + i64::from(n), Some(ip)).unwrap();
        }
        let (users, addresses) = limiter.buckets();
        assert!(
            users < 20_000 && addresses < 20_000,
            "idle buckets were evicted: {users} people, {addresses} addresses"
        );
        assert_eq!(
            limiter.check(8, busy).unwrap_err().scope,
            LimitScope::Address,
            "the busy address is still limited"
        );
    }

    #[test]
    fn an_ipv6_client_owns_its_slash_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(c));
        let mapped: IpAddr = "::ffff:203.0.113.8".parse().unwrap();
        assert_eq!(address_bucket(mapped), IpAddr::from([203, 0, 113, 8]));
    }
}
