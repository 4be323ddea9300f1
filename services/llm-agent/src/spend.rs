//! What `/api/chat` may spend: each chat calls Bedrock (the operator's bill) and acts as the agent
//! identity. Each client (by peer address) has a token bucket of chats per minute; all clients
//! together have a cap on chats in flight, beyond which a chat is refused at once instead of
//! queueing behind slow ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Buckets kept before idle (full) ones are dropped: bounds memory under many clients.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Why a chat may not start now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This client spent its budget; it may retry after this long.
    RateLimited(Duration),
    /// Too many chats in flight.
    Busy,
}

/// Who a budget belongs to: an IPv4 address, an IPv6 /64 (one subscriber's network: rotating
/// addresses inside it earns nothing), or the clients whose address is unknown, together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(Option<IpAddr>);

impl Client {
    /// The budget holder for `ip`.
    pub fn of(ip: Option<IpAddr>) -> Self {
        Self(ip.map(|ip| match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
        }))
    }
}

/// The limiter; one per agent.
pub struct ChatBudget {
    per_minute: f64,
    burst: f64,
    buckets: Mutex<Buckets>,
    in_flight: Arc<Semaphore>,
}

#[derive(Default)]
struct Buckets {
    by_client: HashMap<Client, Bucket>,
    last_sweep: Option<Instant>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ChatBudget {
    /// `per_minute` chats per client (a burst of as many), `max_in_flight` chats at once.
    pub fn new(per_minute: u32, max_in_flight: usize) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Self {
            per_minute,
            burst: per_minute,
            buckets: Mutex::new(Buckets::default()),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Takes one chat from `client`'s budget.
    pub fn charge(&self, client: Client) -> Result<(), Refusal> {
        let now = Instant::now();
        let per_second = self.per_minute / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Many clients: drop the buckets that have refilled (they hold nothing), at most once a
        // second so that a flood of new clients does not make every request sweep.
        if buckets.by_client.len() >= MAX_TRACKED_CLIENTS
            && buckets
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            let (burst, rate) = (self.burst, per_second);
            buckets
                .by_client
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            buckets.by_client.shrink_to_fit();
            buckets.last_sweep = Some(now);
        }
        if buckets.by_client.len() >= MAX_TRACKED_CLIENTS
            && !buckets.by_client.contains_key(&client)
        {
            // Still full of clients with spent budgets: a new one waits for the sweep.
            return Err(Refusal::RateLimited(Duration::from_secs(1)));
        }
        let bucket = buckets.by_client.entry(client).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second)
            .min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Refusal::RateLimited(Duration::from_secs_f64(wait)))
        }
    }

    /// Gives back a chat charged to `client` that did not run (refused as busy).
    pub fn refund(&self, client: Client) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.by_client.get_mut(&client) {
            b.tokens = (b.tokens + 1.0).min(self.burst);
        }
    }

    /// A slot in flight, held by the returned permit until the chat ends.
    pub fn slot(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_budget_refills_at_its_rate_and_clients_are_apart() {
        let budget = ChatBudget::new(2, 10);
        let a = Client::of(Some(IpAddr::from([10, 0, 0, 1])));
        let b = Client::of(Some(IpAddr::from([10, 0, 0, 2])));
        assert!(budget.charge(a).is_ok() && budget.charge(a).is_ok());
        let Err(Refusal::RateLimited(wait)) = budget.charge(a) else {
            panic!("over budget")
        };
        assert_eq!(wait, Duration::from_secs(30));
        assert!(
            budget.charge(b).is_ok(),
            "another client has its own budget"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(budget.charge(a).is_ok(), "refilled");
        budget.refund(a);
        assert!(
            budget.charge(a).is_ok(),
            "a refunded chat can be spent again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_counts_chats_in_flight_not_chats() {
        let budget = ChatBudget::new(100, 2);
        let one = budget.slot().unwrap();
        let _two = budget.slot().unwrap();
        assert_eq!(budget.slot().unwrap_err(), Refusal::Busy);
        drop(one);
        assert!(budget.slot().is_ok());
    }

    #[test]
    fn an_ipv6_network_is_one_client() {
        let ip = |s: &str| Client::of(Some(s.parse().unwrap()));
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:10.0.0.1"), ip("10.0.0.1"));
    }
}
