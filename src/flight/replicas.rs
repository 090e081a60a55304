//! Replicas: several stateless servers on one registry, and which of them
//! each endpoint names.
//!
//! The members are this server's advertised addresses (`--advertise`), the
//! peers given (`--peer`) and the addresses a DNS name resolves to
//! (`--peer-dns`, re-resolved on every round). A background task asks every
//! peer's gRPC health service every [`CHECK_EVERY`]; peers that do not answer
//! SERVING within [`CHECK_TIMEOUT`] are left out of endpoints until they do.
//! This server counts as healthy until it drains (after SIGTERM), and then
//! leaves itself out at once.
//!
//! A peer counts only if it serves the same registry: each server reports
//! its health also under [`registry_service`], a name derived from its
//! registry's URL, and peers are asked for that name. A peer started with
//! another `--registry` answers "not registered" and is left out (logged),
//! rather than named in endpoints where every read would find nothing.
//!
//! Every endpoint lists all healthy members. With rendezvous placement they
//! are ordered by a hash of the ticket and the member's address (highest
//! random weight), so every replica puts the same member first for the same
//! ticket and repeated reads of the same data meet that member's stream
//! cache; when a member leaves or joins, only the tickets it ranked first
//! move. The rest follow as fallbacks, which clients try in order.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How often peers are checked (and the DNS name resolved).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a peer may take to connect and answer a health check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// The service whose health a peer reports when no registry is named.
const SERVICE: &str = "arrow.flight.protocol.FlightService";

/// The gRPC health service name under which a server reports that it serves
/// the registry at `registry_url` (with the Flight service's status):
/// `sheaf.registry.` and the first 16 hex digits of the URL's SHA-256, so
/// the name tells nothing of where the registry lives.
pub fn registry_service(registry_url: &str) -> String {
    format!("sheaf.registry.{}", hex::encode(&Sha256::digest(registry_url.as_bytes())[..8]))
}

/// How an endpoint's members are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// By a hash of the ticket: each member caches its own share of the data.
    #[default]
    Rendezvous,
    /// Rotated from one endpoint to the next (a spread with no affinity).
    RoundRobin,
}

/// The membership settings of a server ([`crate::flight::ServeOptions`]).
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    /// This server's own addresses, as clients reach it.
    pub advertise: Vec<String>,
    /// The other replicas' addresses.
    pub peers: Vec<String>,
    /// `HOST:PORT` whose addresses are replicas.
    pub peer_dns: Option<String>,
    /// How endpoints order their members.
    pub placement: Placement,
    /// CA certificates (PEM) for `grpc+tls://` peers, besides the system's.
    pub peer_ca: Option<Vec<u8>>,
    /// A client identity (certificate and key, PEM) for peers that require
    /// mutual TLS: the server's own.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Whether this server speaks TLS (addresses from DNS are then
    /// `grpc+tls://`).
    pub tls: bool,
    /// The health service naming this server's registry
    /// ([`registry_service`]): peers must report it SERVING. `None` checks
    /// the Flight service alone.
    pub registry_service: Option<String>,
}

/// The members of the service and which of them are healthy (the default:
/// none, so endpoints name no location).
#[derive(Debug, Default)]
pub struct Replicas {
    options: ReplicaOptions,
    /// Peers that answered SERVING in the last round (addresses).
    healthy: RwLock<BTreeSet<String>>,
    /// Whether a round has finished (before it, every peer is listed).
    checked: AtomicBool,
    /// Set when this server drains: it leaves itself out of endpoints.
    draining: AtomicBool,
}

impl Replicas {
    /// Members as configured; none healthy is known until [`Replicas::watch`]
    /// has run a round.
    pub fn new(options: ReplicaOptions) -> Self {
        Replicas {
            options,
            healthy: RwLock::default(),
            checked: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }

    /// Whether endpoints name locations at all (any member configured).
    pub fn configured(&self) -> bool {
        !self.options.advertise.is_empty() || !self.options.peers.is_empty() || self.options.peer_dns.is_some()
    }

    /// From now on this server leaves itself out of endpoints.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The locations of the `index`-th endpoint of a plan, whose ticket is
    /// `key`: every healthy member, each once, in placement order (empty
    /// when no member is configured: "the server you asked").
    pub fn locations(&self, key: &[u8], rotation: usize) -> Vec<String> {
        let mut members: Vec<String> = Vec::new();
        if !self.draining.load(Ordering::Relaxed) {
            members.extend(self.options.advertise.iter().cloned());
        }
        let healthy = self.healthy.read().unwrap_or_else(|e| e.into_inner());
        if self.checked.load(Ordering::Relaxed) {
            members.extend(healthy.iter().cloned());
        } else {
            members.extend(self.options.peers.iter().cloned());
        }
        drop(healthy);
        let mut seen = BTreeSet::new();
        members.retain(|m| seen.insert(m.clone()));
        if members.is_empty() && self.configured() {
            // Nothing healthy (or draining alone): name this server's own
            // addresses rather than none, so a client still has somewhere to go.
            members = self.options.advertise.clone();
        }
        match self.options.placement {
            Placement::Rendezvous => rendezvous(members, key),
            Placement::RoundRobin => {
                if !members.is_empty() {
                    let n = members.len();
                    members.rotate_left(rotation % n);
                }
                members
            }
        }
    }

    /// Checks the peers every [`CHECK_EVERY`] until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        if self.options.peers.is_empty() && self.options.peer_dns.is_none() {
            return;
        }
        let tls = self.client_tls();
        let service = self.options.registry_service.as_deref().unwrap_or(SERVICE);
        let mut channels = std::collections::HashMap::new();
        let mut elsewhere = BTreeSet::new();
        loop {
            let candidates = self.candidates().await;
            let checks = candidates.iter().map(|peer| {
                let channel = channels.entry(peer.clone()).or_insert_with(|| channel(peer, &tls)).clone();
                async move { (peer.clone(), check(channel, service).await) }
            });
            let results = futures::future::join_all(checks).await;
            for (peer, verdict) in &results {
                if *verdict == Verdict::OtherRegistry && elsewhere.insert(peer.clone()) {
                    tracing::warn!(
                        peer = %peer,
                        "a peer answers but does not serve this server's registry (started with another --registry?); left out of endpoints"
                    );
                } else if *verdict != Verdict::OtherRegistry {
                    elsewhere.remove(peer);
                }
            }
            let healthy: BTreeSet<String> =
                results.iter().filter(|(_, v)| *v == Verdict::Serving).map(|(p, _)| p.clone()).collect();
            {
                let mut current = self.healthy.write().unwrap_or_else(|e| e.into_inner());
                if *current != healthy {
                    tracing::info!(healthy = ?healthy, of = candidates.len(), "replicas");
                }
                *current = healthy;
            }
            self.checked.store(true, Ordering::Relaxed);
            channels.retain(|peer, _| candidates.contains(peer));
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    /// The peers to check now: those given, and the DNS name's addresses.
    async fn candidates(&self) -> BTreeSet<String> {
        let mut peers: BTreeSet<String> = self.options.peers.iter().cloned().collect();
        if let Some(name) = &self.options.peer_dns {
            let scheme = if self.options.tls { "grpc+tls" } else { "grpc" };
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addresses) => peers.extend(addresses.map(|a| format!("{scheme}://{a}"))),
                Err(e) => tracing::warn!(peer_dns = %name, error = %e, "cannot resolve the peers' DNS name"),
            }
        }
        for own in &self.options.advertise {
            peers.remove(own);
        }
        peers
    }

    fn client_tls(&self) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &self.options.peer_ca {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.options.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        tls
    }
}

/// A lazily connecting channel to `peer` (an unusable address or TLS
/// setting gives a channel that always fails, so the peer is unhealthy).
fn channel(peer: &str, tls: &ClientTlsConfig) -> Option<tonic::transport::Channel> {
    let url = sheaf_client::endpoints::http_url(peer);
    let mut endpoint = Endpoint::from_shared(url.clone()).ok()?.connect_timeout(CHECK_TIMEOUT).timeout(CHECK_TIMEOUT);
    if url.starts_with("https://") {
        endpoint = endpoint
            .tls_config(tls.clone())
            .inspect_err(|e| tracing::error!(peer, error = %e, "peer TLS settings (--peer-ca) are unusable"))
            .ok()?;
    }
    Some(endpoint.connect_lazy())
}

/// What a peer's health check told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It reports the service SERVING.
    Serving,
    /// It answers, but has no such service: it serves another registry.
    OtherRegistry,
    /// Not serving, unreachable, or too slow.
    Down,
}

/// What the peer behind `channel` reports of `service`, in time.
async fn check(channel: Option<tonic::transport::Channel>, service: &str) -> Verdict {
    let Some(channel) = channel else { return Verdict::Down };
    let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
    let mut client = HealthClient::new(channel);
    match tokio::time::timeout(CHECK_TIMEOUT, client.check(request)).await {
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => Verdict::Serving,
        Ok(Err(status)) if status.code() == tonic::Code::NotFound && service != SERVICE => Verdict::OtherRegistry,
        _ => Verdict::Down,
    }
}

/// `members` ordered by their rendezvous weight for `key`, highest first
/// (ties, which SHA-256 makes vanishingly rare, by address).
pub fn rendezvous(members: Vec<String>, key: &[u8]) -> Vec<String> {
    let mut weighted: Vec<(u64, String)> = members.into_iter().map(|m| (weight(&m, key), m)).collect();
    weighted.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    weighted.into_iter().map(|(_, m)| m).collect()
}

/// The weight of `member` for `key`: the first 8 bytes of
/// SHA-256(len(member) || member || key). Fixed forever: replicas of
/// different builds must agree (the unit test pins it).
fn weight(member: &str, key: &[u8]) -> u64 {
    let mut hash = Sha256::new();
    hash.update((member.len() as u64).to_le_bytes());
    hash.update(member.as_bytes());
    hash.update(key);
    u64::from_be_bytes(hash.finalize()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<String> {
        ["grpc://a:1", "grpc://b:1", "grpc://c:1"].map(String::from).to_vec()
    }

    #[test]
    fn rendezvous_order_is_pinned() {
        // Replicas of different builds must agree: these orders (computed
        // independently with Python's hashlib) never change.
        let order =
            |key: &[u8]| -> String { rendezvous(members(), key).iter().map(|m| m.chars().nth(7).unwrap()).collect() };
        assert_eq!(order(b"x"), "acb");
        assert_eq!(order(b"y"), "abc");
        assert_eq!(order(b"z"), "cba");
        assert_eq!(order(b"ticket"), "bca");
    }

    #[test]
    fn rendezvous_spreads_and_moves_only_the_departed_share() {
        let keys: Vec<Vec<u8>> = (0..3000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let first = |members: Vec<String>, k: &[u8]| rendezvous(members, k)[0].clone();
        let mut counts = std::collections::BTreeMap::new();
        for k in &keys {
            *counts.entry(first(members(), k)).or_insert(0) += 1;
        }
        assert!(counts.values().all(|&n| n > 800), "{counts:?}");
        let two = vec!["grpc://a:1".to_string(), "grpc://c:1".to_string()];
        for k in &keys {
            let before = first(members(), k);
            if before != "grpc://b:1" {
                assert_eq!(first(two.clone(), k), before, "a key not on the departed member moved");
            }
        }
        let full = rendezvous(members(), b"k");
        assert_eq!(full.len(), 3);
        assert_eq!(full.iter().collect::<BTreeSet<_>>().len(), 3);
    }

    #[test]
    fn locations_follow_membership_and_draining() {
        let replicas = Replicas::new(ReplicaOptions {
            advertise: vec!["grpc://a:1".into()],
            peers: vec!["grpc://b:1".into(), "grpc://a:1".into()],
            ..Default::default()
        });
        // Before the first round every configured peer is listed, once.
        let all = replicas.locations(b"k", 0);
        assert_eq!(
            all.iter().collect::<BTreeSet<_>>(),
            ["grpc://a:1", "grpc://b:1"].iter().map(|s| s.to_string()).collect::<Vec<_>>().iter().collect()
        );
        // After a round in which b failed: only this server.
        replicas.checked.store(true, Ordering::Relaxed);
        assert_eq!(replicas.locations(b"k", 0), ["grpc://a:1"]);
        replicas.healthy.write().unwrap().insert("grpc://b:1".into());
        assert_eq!(replicas.locations(b"k", 0).len(), 2);
        replicas.drain();
        assert_eq!(replicas.locations(b"k", 0), ["grpc://b:1"]);
        assert!(Replicas::new(ReplicaOptions::default()).locations(b"k", 0).is_empty());
    }

    #[test]
    fn registry_service_name_is_pinned() {
        // Replicas of different builds must agree (computed with Python's hashlib).
        assert_eq!(registry_service("s3://bucket/registry"), "sheaf.registry.29d97fec2a58596d");
    }

    #[test]
    fn round_robin_rotates() {
        let replicas = Replicas::new(ReplicaOptions {
            advertise: members(),
            placement: Placement::RoundRobin,
            ..Default::default()
        });
        assert_eq!(replicas.locations(b"k", 0)[0], "grpc://a:1");
        assert_eq!(replicas.locations(b"k", 1)[0], "grpc://b:1");
        assert_eq!(replicas.locations(b"k", 5)[0], "grpc://c:1");
    }
}
