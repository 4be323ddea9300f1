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

/// The limiter; one per agent.
pub struct ChatBudget {
    per_minute: f64,
    burst: f64,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
    in_flight: Arc<Semaphore>,
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
            buckets: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Takes one chat from `client`'s budget and a slot in flight (held by the returned permit
    /// until the chat ends). `None` is a client whose address is unknown (all such share one).
    pub fn start(&self, client: Option<IpAddr>) -> Result<OwnedSemaphorePermit, Refusal> {
        self.take(client)?;
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)
    }

    fn take(&self, client: Option<IpAddr>) -> Result<(), Refusal> {
        let now = Instant::now();
        let per_second = self.per_minute / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            let (burst, rate) = (self.burst, per_second);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_budget_refills_at_its_rate_and_clients_are_apart() {
        let budget = ChatBudget::new(2, 10);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(budget.start(a).is_ok() && budget.start(a).is_ok());
        let Err(Refusal::RateLimited(wait)) = budget.start(a) else {
            panic!("over budget")
        };
        assert_eq!(wait, Duration::from_secs(30));
        assert!(budget.start(b).is_ok(), "another client has its own budget");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(budget.start(a).is_ok(), "refilled");
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_counts_chats_in_flight_not_chats() {
        let budget = ChatBudget::new(100, 2);
        let one = budget.start(None).unwrap();
        let _two = budget.start(None).unwrap();
        assert_eq!(budget.start(None).unwrap_err(), Refusal::Busy);
        drop(one);
        assert!(budget.start(None).is_ok());
    }
}
